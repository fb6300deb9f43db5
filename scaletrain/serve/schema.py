"""Requests read into rows: a typed row model built from the run's columns (which is also the
OpenAPI schema), and each accepted body — JSON records or column arrays, a CSV/Parquet/JSONL
upload, text, an image — turned into a Source, or a RequestError that names what is wrong."""
from __future__ import annotations

import base64
import io
import reprlib
from typing import ClassVar, Optional, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from scaletrain.data.pixels import DATA_URI
from scaletrain.data.sounds import SOUND_URI
from scaletrain.data.sources import Source
from scaletrain.serve.limits import (
    Limits,
    RequestError,
    check_client_image,
    check_client_sound,
    check_frame_strings,
    check_text,
    sound_time_over,
    too_many_rows,
)

MEDIA_CELLS = ("image_cell", "sound_cell")

FIELD_TYPES = {"number": Optional[float], "boolean": Optional[Union[bool, str]], "date": Optional[str],
               "category": Optional[Union[str, int, float]], "text": Optional[str],
               "image_cell": Optional[str],  # a table's image column: a data:image/...;base64 URI (check_client_image)
               "sound_cell": Optional[str],  # a table's sound column: a data:audio/...;base64 URI (check_client_sound)
               # a sequence column's steps: numbers, or vectors of them (the body's size bounds its length)
               "steps": Optional[list[Union[Optional[float], list[Optional[float]]]]]}


def row_model(fields: list[dict], optional: list[str]) -> type[BaseModel] | None:
    """The pydantic model of one row: each column the run reads is required (null for a missing
    value); the target and left-out columns may come along; anything else is refused."""
    typed = {f["name"]: (FIELD_TYPES[f["type"]], ...) for f in fields if f["type"] in FIELD_TYPES}
    if not typed:
        return None
    typed |= {name: (Optional[Union[str, float, bool]], None) for name in optional if name not in typed}
    row = create_model("Row", __base__=_Row, **typed)
    row.media_columns = {f["name"]: f["type"] for f in fields if f["type"] in MEDIA_CELLS}
    return row


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")
    media_columns: ClassVar[dict] = {}  # the columns whose cells are images or sounds (checked as a client's): their type


def request_schema(row: type[BaseModel] | None, upload_type: str = "") -> dict:
    """The OpenAPI request body of POST /predict (`upload_type`: the media type of one item the
    run's modality reads, such as "image/"; "" for table rows)."""
    content = {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": f"one {upload_type}* file" if upload_type else "a CSV, Parquet or JSONL table"}}}}}
    if row is not None:
        records = {"type": "array", "items": row.model_json_schema()}
        content["application/json"] = {"schema": {"oneOf": [
            {"type": "object", "properties": {"records": records}, "required": ["records"]},
            {"type": "object", "properties": {"columns": {"type": "object"}}, "required": ["columns"]},
            records]}}
        content["text/plain"] = {"schema": {"type": "string", "description": "one text (a model with one text column)"}}
    elif upload_type:
        content[f"{upload_type}*"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


def rows_from_json(body: bytes, row: type[BaseModel] | None, limits: Limits = Limits()) -> list[dict]:
    """Validated rows from a JSON body: a list of records, {"records": [...]} or
    {"columns": {name: [values]}}. (Frames are made per micro-batch, not per request: a
    one-row DataFrame costs more than the model does.)"""
    if row is None:
        raise RequestError(415, "this model reads one image or sound per request: send it as a file upload (multipart "
                                "field 'file') or as the body with its own content type (image/png, audio/wav, ...)")
    data = parse_json(body)
    if isinstance(data, dict) and "columns" in data:
        data = _records_from_columns(data["columns"], limits)
    records = data.get("records") if isinstance(data, dict) else data
    if isinstance(data, dict) and records is None:
        raise RequestError(422, "the JSON body needs 'records' (a list of rows) or 'columns' (name -> list of values)")
    if not isinstance(records, list) or not records:
        raise RequestError(422, "'records' must be a non-empty list of rows (objects of column -> value)")
    return validated_rows(records, row, limits)


def validated_rows(records: list, row: type[BaseModel], limits: Limits) -> list[dict]:
    """Records checked against the row model and the limits: a RequestError naming the row."""
    if len(records) > limits.rows:
        raise too_many_rows(len(records), limits)
    rows, seconds = [], 0.0
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise RequestError(422, f"row {i}: expected an object of column -> value, got {type(record).__name__}")
        try:
            rows.append(row.model_validate(record).model_dump())
        except ValidationError as exc:
            raise RequestError(422, f"row {i}: " + "; ".join(_problem(e) for e in exc.errors()[:5])) from None
        for column, value in rows[-1].items():
            if isinstance(value, str):
                check_text(value, column, limits)
        seconds += sum(check_client_cell(rows[-1][column], column, kind, limits) for column, kind in row.media_columns.items())
        if seconds > limits.sound_seconds:
            raise sound_time_over(seconds, limits)
    return rows


def check_client_cell(value, column: str, kind: str, limits: Limits) -> float:
    """A media cell a client sent, checked as its kind says; the seconds of sound it holds."""
    if kind == "sound_cell":
        return check_client_sound(value, column, limits)
    check_client_image(value, column, limits)
    return 0.0


def rows_from_form(items: list[tuple[str, str | bytes]], row: type[BaseModel] | None, limits: Limits) -> list[dict]:
    """One row from a multipart form of the run's columns: a field per column (empty or left out:
    a missing value), an uploaded file for each image column."""
    if row is None:
        raise RequestError(415, "this model reads one image or sound per request: send it as the form's 'file'")
    record: dict = {}
    for name, value in items:
        if name in record:
            raise RequestError(422, f"the form gives '{name}' twice; give each column once")
        if isinstance(value, bytes):  # a file for a media column: inline, as its kind's data URI
            uri = SOUND_URI if row.media_columns.get(name) == "sound_cell" else DATA_URI
            value = f"{uri}upload;base64,{base64.b64encode(value).decode()}" if value else None
        record[name] = None if value == "" else value
    return validated_rows([{name: None for name in row.model_fields} | record], row, limits)


def parse_json(body: bytes):
    """The JSON value of a body (orjson: no recursion, so nesting cannot exhaust the stack)."""
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # bad JSON or UTF-8, a lone surrogate, a number out of range
        raise RequestError(400, f"malformed JSON: {str(exc)[:200]}") from None


def _records_from_columns(columns, limits: Limits) -> list[dict]:
    if not isinstance(columns, dict) or not columns:
        raise RequestError(422, "'columns' must be an object of column name -> list of values")
    lengths = {name: len(v) if isinstance(v, list) else -1 for name, v in columns.items()}
    if min(lengths.values()) < 0 or len(set(lengths.values())) != 1:
        raise RequestError(422, f"every entry of 'columns' must be a list, all of one length (got lengths {lengths})")
    if max(lengths.values()) > limits.rows:
        raise too_many_rows(max(lengths.values()), limits)
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _problem(error: dict) -> str:
    """One pydantic error as 'column x: what was expected'."""
    where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int) or len(error["loc"]) == 1)
    if error["type"] == "extra_forbidden":
        return f"unknown column '{where}' (the model reads no such column)"
    if error["type"] == "missing":
        return f"column '{where}' is missing (give null for a missing value)"
    return f"column '{where}': {error['msg'].lower()}, got {_short.repr(error.get('input'))}"


_short = reprlib.Repr()  # a value as the client sent it, cut short (nested or long values stay readable)
_short.maxlevel, _short.maxstring, _short.maxother = 2, 60, 60


def records_source(rows: list[dict], row: type[BaseModel]) -> Source:
    """Validated records (of one or many requests) as one table source."""
    return Source("table", "records", frame=typed_frame(rows, row))


def typed_frame(rows: list[dict], row: type[BaseModel]) -> pd.DataFrame:
    """Rows as a frame whose number columns are floats (NaN for null), as read from a file."""
    frame = pd.DataFrame(rows, columns=list(row.model_fields))
    for name, field in row.model_fields.items():
        if field.annotation == Optional[float]:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    return frame


def rows_from_text(body: bytes, fields: list[dict], limits: Limits = Limits()) -> pd.DataFrame:
    """One row from a text/plain body, for a model whose only text column takes it."""
    texts = [f["name"] for f in fields if f["type"] == "text"]
    if len(texts) != 1 or len(fields) != 1:
        raise RequestError(415, f"a text body fits a model with one text column and nothing else; this model reads "
                                f"{[f['name'] for f in fields]}: send JSON records")
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise RequestError(422, f"empty text: send the text to classify in the body (column '{texts[0]}')")
    check_text(text, texts[0], limits)
    return pd.DataFrame({texts[0]: [text]})


def rows_from_upload(name: str, data: bytes, limits: Limits = Limits(), media: dict | None = None) -> pd.DataFrame:
    """A table upload (CSV by default; Parquet or JSONL by its name), its rows counted before or
    while it is parsed; the cells of its `images` columns checked as a client's images."""
    try:
        frame = _read_upload(name, data, limits)
    except RequestError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many types for a bad file
        raise RequestError(422, f"the upload '{name}' is not a readable table ({type(exc).__name__}: "
                                f"{str(exc)[:200]})") from None
    if len(frame) > limits.rows:
        raise too_many_rows(len(frame), limits)
    check_frame_strings(frame, limits)
    seconds = sum(check_client_cell(value, column, kind, limits)
                  for column, kind in (media or {}).items() if column in frame.columns for value in frame[column])
    if seconds > limits.sound_seconds:
        raise sound_time_over(seconds, limits)
    return frame


def _read_upload(name: str, data: bytes, limits: Limits) -> pd.DataFrame:
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        declared = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows  # the footer: nothing decoded yet
        if declared > limits.rows:
            raise too_many_rows(declared, limits)
        return pd.read_parquet(io.BytesIO(data))
    if name.endswith(".jsonl"):
        lines = data.count(b"\n") + 1
        if lines > limits.rows + 1:  # + 1: a trailing newline
            raise too_many_rows(lines, limits)
        return pd.read_json(io.BytesIO(data), lines=True)
    if name.endswith(".json"):
        parsed = parse_json(data)
        if isinstance(parsed, list) and len(parsed) > limits.rows:
            raise too_many_rows(len(parsed), limits)
        return pd.DataFrame(parsed)
    return pd.read_csv(io.BytesIO(data), nrows=limits.rows + 1)  # one past the limit says it is over


def upload_source(modality, state: dict, data: bytes, name: str, limits: Limits = Limits()) -> Source:
    """One uploaded item (an image, a sound clip) read by the run's modality; past a limit, 413."""
    from scaletrain.errors import InputTooLarge

    try:
        return modality.upload_source(state, data, name, limits)
    except InputTooLarge as exc:
        raise RequestError(413, str(exc)) from None


def refuse_item(fields: list[dict], sent: str, read: str) -> RequestError:
    """415 for one item (an image, a sound clip) sent to a model that reads another kind (`read`
    "" : table rows)."""
    if read:
        return RequestError(415, f"this model reads {read}, not {sent}")
    return RequestError(415, f"this model reads table rows {[f['name'] for f in fields][:8]}: send JSON records or a "
                             f"CSV upload, not {sent}")
