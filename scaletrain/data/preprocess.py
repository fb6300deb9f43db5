"""The preprocessing every modality shares: the target's state, fitted on training rows and
stored as JSON, its encoding and decoding; text read from Arrow; a tokenizer given by path.
A modality's own preprocessing lives in its package (modalities/table/preprocess.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scaletrain.data.stats import TargetStats
from scaletrain.data.text import (
    tokenizer_from_json,
)
from scaletrain.data.values import (
    MISSING,
    category_strings,
    label_key,
)
from scaletrain.errors import DataError
from scaletrain.tasks import task_of
from scaletrain.tasks.regression import MAX_LEVELS

if TYPE_CHECKING:  # torch is imported where tensors are made: `prepare` runs without it
    import torch



# ---------------------------------------------------------------- target
def fit_target(y: pd.Series | np.ndarray, task: str) -> dict:
    """Return the target state: classes for classification, mean/std for regression."""
    stats = TargetStats(task)
    stats.update(pd.Series(y))
    return target_state(stats)


def target_state(stats: TargetStats) -> dict:
    """Return the target state from its statistics (in memory or merged from shards)."""
    if not task_of(stats.task).classifies:
        # the training targets' range: predictions are kept within it (tasks/regression.py)
        state = {"task": stats.task, "mean": stats.moments.mean, "std": stats.moments.std or 1.0,
                 "lo": stats.moments.min, "hi": stats.moments.max}
        levels = stats.moments.max - stats.moments.min + 1
        if stats.moments.count and not stats.fractional and 2 <= levels <= MAX_LEVELS:
            state["levels"] = int(levels)  # whole numbers lo..hi: train.loss=levels can model each
            state["scale"] = len(stats.wholes) == levels  # each of them seen: a rating scale, not y = 2x
        return state
    uniques = [stats.examples[k] for k in stats.labels]
    try:
        classes = sorted(uniques)
    except TypeError:
        classes = sorted(uniques, key=str)
    return {"task": stats.task, "classes": classes}


def encode_target(state: dict, y, where: str = "target") -> torch.Tensor:
    """Return targets as class indices (long) or standardized floats."""
    import torch

    values = pd.Series(y)
    if not task_of(state["task"]).classifies:
        v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        return torch.from_numpy(((v - state["mean"]) / state["std"]).astype(np.float32))
    lookup = {label_key(c): i for i, c in enumerate(state["classes"])}
    if (text := arrow_text(values)) is not None:
        found = pc.index_in(pc.fill_null(text, MISSING), value_set=pa.array(list(lookup), text.type))
        unknown = found.is_null().to_numpy(zero_copy_only=False)
        index = np.asarray(list(lookup.values()), dtype=np.int64)[pc.fill_null(found, 0).to_numpy()]
    else:
        mapped = category_strings(values).map(lookup)  # a dict lookup per value, vectorized by pandas
        unknown = mapped.isna().to_numpy()
        index = None if unknown.any() else mapped.to_numpy(dtype=np.int64, copy=True)  # writable: a tensor's memory
    if unknown.any():
        raise DataError(f"{where} holds label {values[unknown].iloc[0]!r} that the model never saw "
                        f"(known: {state['classes'][:10]})")
    return torch.from_numpy(np.ascontiguousarray(index))


def decode_target(state: dict, encoded: np.ndarray) -> np.ndarray:
    """The inverse of encode_target: encoded targets in the target's own values."""
    task = task_of(state["task"])
    return task.decode(state, task.truth(state, encoded))


def arrow_text(series: pd.Series) -> pa.ChunkedArray | None:
    """Return the Arrow strings behind a pyarrow-backed text column (what Parquet shards read
    as), else None."""
    dtype = series.dtype
    if (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow") or isinstance(dtype, pd.ArrowDtype):
        text = pa.chunked_array(series.array.__arrow_array__())
        if pa.types.is_string(text.type) or pa.types.is_large_string(text.type):
            return text
    return None


def given_tokenizer(where: str):
    """A tokenizer from a tokenizer.json or a run directory."""
    from scaletrain.rundir import RunDir

    path = Path(where)
    if path.is_file():
        try:
            return tokenizer_from_json(path.read_text(encoding="utf-8"))
        except Exception as exc:  # tokenizers raises its own exception type on a bad file
            raise DataError(f"data.tokenizer '{where}' is not a tokenizer.json file ({exc})") from None
    return tokenizer_from_json(RunDir(path).read_tokenizer())
