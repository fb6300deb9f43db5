"""Side-by-side figures of the original and its compressed variants, in one process: size on
disk, parameters, onnxruntime latency per row and per batch, and the test score.

Every variant is timed through its exported ONNX file in onnxruntime (what is shipped), in
rounds that take the variants in turn so that a slower minute on a shared machine falls on
all of them alike; latency is the median over rounds. Ratios to the original are what to read.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaletrain.data.sources import Source
from scaletrain.data.values import label_key
from scaletrain.evaluate.metrics import compute_metrics, main_score_name
from scaletrain.export import onnx_inputs
from scaletrain.run import Run
from scaletrain.tasks import task_of

BATCH, ROUNDS, ROW_CALLS, BATCH_CALLS = 256, 7, 50, 5
# the most a round spends on one variant's calls of one kind: a model that takes 50 ms a batch
# (sounds: the features are in the graph) is timed by one call a round, not 5, and a table's
# row by its 50 calls of a few microseconds; 7 rounds' median of either is well above the clock's resolution
ROUND_SECONDS = 0.05


@dataclass
class Variant:
    name: str
    run: Run
    onnx: Path              # the shipped file: timed, and its size is the variant's size on disk
    how: str = ""
    figures: dict = field(default_factory=dict)


def raw_rows(source: Source):
    """The source's raw input as onnx_inputs takes it: a frame of rows, or the source of items."""
    return source.frame if source.frame is not None else source


def _session(path: Path):
    """A session whose threads sleep between calls: by default onnxruntime's keep spinning after
    a call, and with several sessions timed in turn they took the cores from the next one (the
    same int8 model measured 0.46x and 0.97x the original in two runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _seconds(session, feeds: dict, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        session.run(None, feeds)
    return (time.perf_counter() - started) / calls


def _calls(session, feeds: dict, most: int) -> int:
    """How many calls a round makes (at most `most`, ROUND_SECONDS in all), from a warm call's time."""
    _seconds(session, feeds, 2)  # warm: first calls allocate
    return max(1, min(most, int(ROUND_SECONDS / max(_seconds(session, feeds, 1), 1e-9))))


def ort_predictions(session, run: Run, feeds: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """(class indices or values, probabilities or None) from an exported model, in batches."""
    n = len(next(iter(feeds.values())))
    parts = [session.run(None, {k: v[i:i + 4096] for k, v in feeds.items()}) for i in range(0, n, 4096)]
    if not task_of(run.task).classifies:
        return np.concatenate([p[0] for p in parts]), None
    index = {label_key(c): i for i, c in enumerate(run.classes)}
    labels = np.concatenate([p[0] for p in parts])
    return np.asarray([index[label_key(v)] for v in labels]), np.concatenate([p[1] for p in parts])


def measure(variants: list[Variant], test: Source) -> None:
    """Fill each variant's figures (and its ratios to the first, the original)."""
    from scaletrain.data.preprocess import encode_target

    original = variants[0].run
    labels = test.frame[original.preprocess["target_column"]] if test.frame is not None else test.items.labels
    feeds = onnx_inputs(original, raw_rows(test))
    one = {k: v[:1] for k, v in feeds.items()}
    batch = {k: np.concatenate([v] * (BATCH // len(v) + 1))[:BATCH] for k, v in feeds.items()}
    sessions = [_session(v.onnx) for v in variants]
    calls = [(_calls(s, one, ROW_CALLS), _calls(s, batch, BATCH_CALLS)) for s in sessions]
    rows = {v.name: [] for v in variants}
    batches = {v.name: [] for v in variants}
    for _ in range(ROUNDS):
        for v, s, (row_calls, batch_calls) in zip(variants, sessions, calls):
            rows[v.name].append(_seconds(s, one, row_calls))
            batches[v.name].append(_seconds(s, batch, batch_calls))
    score = main_score_name(original.task)
    truth = (np.asarray(labels, dtype=np.float64) if not task_of(original.task).classifies else
             encode_target(original.preprocess["target"], labels).numpy())
    reference = None
    for v, s in zip(variants, sessions):
        predicted, proba = ort_predictions(s, v.run, feeds)
        reference = predicted if reference is None else reference
        metrics = compute_metrics(original.task, truth, predicted, proba)
        v.figures = {"how": v.how, "size_mb": round(v.onnx.stat().st_size / 1e6, 4),
                     "parameters": sum(p.numel() for p in v.run.model.parameters()),
                     "ms_per_row": round(1e3 * float(np.median(rows[v.name])), 4),
                     "ms_per_batch": round(1e3 * float(np.median(batches[v.name])), 3),
                     score: round(float(metrics[score]), 4), "test_rows": int(len(truth))}
        if task_of(original.task).classifies:
            v.figures["same_class_as_original"] = round(float(np.mean(predicted == reference)), 4)
    base = variants[0].figures
    for v in variants:
        v.figures["latency_ratio_row"] = round(v.figures["ms_per_row"] / base["ms_per_row"], 3)
        v.figures["latency_ratio_batch"] = round(v.figures["ms_per_batch"] / base["ms_per_batch"], 3)
        v.figures["size_ratio"] = round(v.figures["size_mb"] / base["size_mb"], 3)


def recommend(variants: list[Variant], score: str, tolerance: float) -> dict:
    """The fastest variant (per batch) that is faster than the original and within `tolerance`
    of its score; or none."""
    base = variants[0].figures
    fit = [v for v in variants[1:] if v.figures["latency_ratio_batch"] < 1.0
           and v.figures[score] >= base[score] - tolerance]
    if not fit:
        return {"variant": None, "why": f"no variant is both faster per batch than the original and within {tolerance} "
                                        f"{score} of it: keep the original"}
    best = min(fit, key=lambda v: v.figures["ms_per_batch"])
    return {"variant": best.name, "why": f"{best.figures['latency_ratio_batch']:.2f}x the original's time per batch of "
                                         f"{BATCH}, {score} {best.figures[score]:.4f} vs {base[score]:.4f} "
                                         f"(tolerance {tolerance})"}
