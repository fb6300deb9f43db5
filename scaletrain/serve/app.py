"""The HTTP server of a run: POST /predict, GET /health, GET /metadata, and a web page at /.

FastAPI (typed OpenAPI schema from the run's columns) on uvicorn. A bad request gets a 4xx
whose JSON `error` names the field and what was expected; nothing a client sends can make
the body carry a traceback. The work a request can cause is bounded before it is done
(serve/limits.py), bodies past 64 KiB are parsed and decoded in worker threads (the event
loop keeps answering /health; smaller JSON bodies take the hot path, serve/hot_path.py), the
model runs from the exported graph where the run has one (serve/graph.py), and a request
that fails fails alone (serve/batcher.py).
"""
from __future__ import annotations

import asyncio
import gc
import os
from contextlib import asynccontextmanager
from dataclasses import replace

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from scaletrain.data.input_check import slice_findings, warning_line
from scaletrain.data.sources import Source
from scaletrain.data.values import json_value
from scaletrain.modalities import MODALITIES
from scaletrain.run import Run
from scaletrain.runtime import release_freed_memory
from scaletrain.serve.batcher import MicroBatcher
from scaletrain.serve.graph import GraphEngine
from scaletrain.serve.hot_path import ServeApp
from scaletrain.serve.http import answer_errors, body_of
from scaletrain.serve.limits import Limits, RequestError
from scaletrain.serve.page import page_html
from scaletrain.serve.schema import (
    records_source,
    refuse_item,
    request_schema,
    row_model,
    rows_from_form,
    rows_from_json,
    rows_from_text,
    rows_from_upload,
    upload_source,
)
from scaletrain.tasks import task_of
from scaletrain.version import VERSION

MAX_REASONS = 20  # explain=K per row at most
TRIM_ROWS = 10_000  # after a request this large the heap is trimmed: RSS falls back after a burst (BENCHMARKS.md)
# bodies parsed at once: more threads contending for the GIL starve the event loop (/health
# answered in up to ~0.4 s under a burst of 8 maximum-size requests) and hold more bodies in memory
PARSE_SLOTS = 2
INLINE_ROWS = 16  # records the graph reads without a frame: batches this small are predicted on the event loop


def create_app(run: Run, *, limits: Limits = Limits(), max_body: int | None = None, strict: bool = False,
               batch_rows: int = 256, wait_ms: float = 0.0, engine: GraphEngine | None = None) -> FastAPI:
    """The FastAPI app serving `run`, each request bounded by `limits` (`max_body` overrides
    their body size), predicting through `engine` (the run's exported graph: serve/graph.py)
    where given, else through torch."""
    if max_body is not None:
        limits = replace(limits, body_bytes=max_body)
    fields = run.modality.input_fields(run.preprocess)
    optional = [run.preprocess.get("target_column")] + list(run.preprocess.get("dropped", {}))
    row = row_model(fields, [c for c in optional if c])

    batcher = _batcher(run, row, strict, batch_rows, wait_ms, engine)
    parsing = asyncio.Semaphore(PARSE_SLOTS)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # what is loaded by now (torch, the run) is left out of garbage collection: a full
        # collection walking it stalled the event loop ~0.1 s (p99 at 64 connections 141 ms -> 9 ms)
        gc.freeze()
        batcher.start()
        yield
        await batcher.stop()

    app = ServeApp(title=f"scaletrain: {run.path.name if run.path else 'model'}", version=VERSION, lifespan=lifespan)
    metadata = {"task": run.task, "target": run.preprocess.get("target_column"), "classes": run.classes,
                "inputs": fields, "metrics": run.metrics.get("test", {}), "model": run.config.model.name,
                "run": str(run.path.name if run.path else ""), "scaletrain": VERSION}

    answer_errors(app)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return page_html(metadata["run"] or "model")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "engine": "graph" if engine else "torch", "worker": os.getpid(),
                "model_calls": batcher.calls, "rows": batcher.rows, "rows_in_flight": batcher.rows_in_flight}

    @app.get("/metadata")
    async def meta() -> dict:
        return metadata

    @app.post("/predict", openapi_extra=request_schema(row, run.modality.upload_type))
    async def predict(request: Request, explain: int = 0) -> JSONResponse:
        check_explain(explain, limits)
        source = await _source(request, run, row, limits, parsing)
        rows = len(source)
        answer = await batcher.submit(source)
        if explain:  # the same explainer as `predict --explain K` (explain/), off the event loop
            frame = source.frame if isinstance(source, Source) else records_source(source, row).frame
            async with parsing:
                answer["reasons"] = await asyncio.to_thread(reasons_of, run, frame, explain, limits)
        return await _response(answer, rows)

    async def predict_json(body: bytes) -> dict:  # the hot path's: a small body, parsed here
        return await batcher.submit(rows_from_json(body, row, limits))

    app.hot, app.limits = predict_json, limits
    return app


def _batcher(run: Run, row, strict: bool, batch_rows: int, wait_ms: float, engine: GraphEngine | None) -> MicroBatcher:
    """The micro-batcher predicting `run` through its exported graph (`engine`) or through torch:
    input warnings, encoding and the model once per batch."""
    def process(data: Source | list[dict]):
        if engine is not None:
            return graph_answer(run, engine, data, row)
        source = records_source(data, row) if isinstance(data, list) else data
        findings = run.input_warnings(source)
        inputs, _ = run.encode(source)
        return (*run.predict_encoded(inputs), findings)

    def split(answer, start: int, end: int) -> dict:
        values, proba, findings = answer
        mine = slice_findings(findings, start, end)
        if strict and mine:
            raise RequestError(422, "the rows do not fit what the model was trained on (the server is --strict): "
                                    + "; ".join(warning_line(f) for f in mine))
        return _answer(run, values[start:end], None if proba is None else proba[start:end], mine)

    return MicroBatcher(process, split, batch_rows, wait_ms, inline_rows=INLINE_ROWS if engine and engine.reads_records else 0)


def graph_answer(run: Run, engine: GraphEngine, data: Source | list[dict], row):
    """(decisions, probabilities, findings) from the graph: validated records fed as they are
    (predict's input checks only for a batch the graph flags), a loaded source through its frame."""
    feeds = run.modality.record_feeds(run.preprocess, data) if isinstance(data, list) else None
    if feeds is not None:
        values, proba, unfit = engine.predict(feeds)
        flagged = unfit is not None and unfit.any()
        return values, proba, run.input_warnings(records_source(data, row)) if flagged else []
    source = records_source(data, row) if isinstance(data, list) else data
    values, proba, _ = engine.predict(run.modality.onnx_feeds(run.preprocess, source))
    return values, proba, run.input_warnings(source)


def check_explain(k: int, limits: Limits) -> None:
    if not 0 <= k <= MAX_REASONS:
        raise RequestError(422, f"explain={k}: ask for 0 to {MAX_REASONS} reasons per row")


def reasons_of(run: Run, frame, k: int, limits: Limits) -> list[list[dict]]:
    """Each row's k strongest reasons: [{"reason": column (or `column: word`), "attribution": …}]."""
    from scaletrain.explain import predict_reasons

    if frame is None:
        raise RequestError(422, "explain= names the reasons of table rows; for images and sounds use `scaletrain explain RUN DATA`")
    if len(frame) > limits.explain_rows:
        raise RequestError(413, f"explain= on {len(frame):,} rows, over the limit of {limits.explain_rows:,} "
                                "(--max-explain-rows): explain fewer rows per request")
    reasons = predict_reasons(run, frame, k)
    return [[{"reason": json_value(row[f"reason_{i}"]), "attribution": float(row[f"reason_{i}_attribution"])}
             for i in range(1, k + 1) if f"reason_{i}" in row] for row in reasons.to_dict("records")]


async def _response(answer: dict, rows: int) -> Response:
    """The answer as JSON (orjson: ~20 ms for 100,000 rows, not ~150; off the event loop for
    many rows); after a request of many rows, once they are freed, the heap's free pages go
    back to the OS."""
    body = orjson.dumps(answer) if rows < TRIM_ROWS else await asyncio.to_thread(orjson.dumps, answer)
    response = Response(body, media_type="application/json")
    if rows >= TRIM_ROWS:
        response.background = BackgroundTask(asyncio.to_thread, release_freed_memory)
    return response


async def _source(request: Request, run: Run, row, limits: Limits, slots: asyncio.Semaphore) -> Source | list[dict]:
    """The request's input, read by its content type: a Source, or validated JSON records.
    One item (an image, a sound) is read by the run's modality (`upload_type`, `upload_source`).
    Parsing and decoding run in a worker thread (`slots` of them at once): a large body never
    stalls the event loop."""
    modality, fields = run.modality, run.modality.input_fields(run.preprocess)

    def item(kind: str) -> bool:  # one item of the run's modality; 415 for another modality's
        if modality.upload_type and (kind.startswith(modality.upload_type) or kind in ("", "application/octet-stream")):
            return True
        other = next((m for m in MODALITIES.values() if m.upload_type and kind.startswith(m.upload_type)), None)
        if other is not None:
            raise refuse_item(fields, other.upload_item, modality.upload_item)
        return False

    async def off_loop(parse, *args):
        async with slots:
            return await asyncio.to_thread(parse, *args)

    body = await body_of(request, limits)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        request._body = body  # starlette's form parser reads the body again from here
        form = await request.form()
        upload = form.get("file")
        if (upload is None or isinstance(upload, str)) and row is not None and set(form.keys()) & set(row.model_fields):
            items = [(name, await value.read() if hasattr(value, "read") else value) for name, value in form.multi_items()]
            return await off_loop(rows_from_form, items, row, limits)  # one row: fields, and files for image columns
        if upload is None or isinstance(upload, str):
            raise RequestError(422, "the multipart form needs a file field named 'file' (a table), or the model's "
                                    "columns as fields")
        name, data = upload.filename or "upload", await upload.read()
        if modality.upload_type or item((upload.content_type or "").lower()):
            return await off_loop(upload_source, modality, run.preprocess, data, name, limits)
        media = row.media_columns if row is not None else {}
        return Source("table", name, frame=await off_loop(rows_from_upload, name, data, limits, media))
    if item(kind):
        return await off_loop(upload_source, modality, run.preprocess, body, modality.name, limits)
    if kind == "text/plain":
        return Source("table", "text", frame=rows_from_text(body, fields, limits))
    if kind in ("application/json", ""):
        return await off_loop(rows_from_json, body, row, limits)
    raise RequestError(415, f"content type '{kind}' is not read here: send application/json, text/plain, an image or "
                            "a sound, or a multipart upload")


def _answer(run: Run, values: np.ndarray, proba: np.ndarray | None, findings: list[dict]) -> dict:
    """The JSON response: predictions in the target's own values, probabilities, warnings."""
    return {**task_of(run.task).answer(run.preprocess["target"], values, proba),
            "warnings": [warning_line(f) for f in findings]}


__all__ = ["create_app", "Limits"]
