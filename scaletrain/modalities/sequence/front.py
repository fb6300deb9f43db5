"""A sequence run's preprocessing: each step's features standardized with the training steps'
mean and deviation (a missing number becomes the mean), the padding after each sequence's end
kept at zero; the row's other number columns imputed, clipped and standardized as a table's are.

Fitted once on the training rows and stored in preprocess.json; applied by one torch module
(SequenceFront) in training, predict and the exported ONNX graph, which therefore takes the raw
steps, their lengths and the raw numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from scaletrain.data.schema import column_role
from scaletrain.data.values import bool_numbers
from scaletrain.errors import DataError
from scaletrain.modalities.sequence.rows import MAX_STEPS, cells, feature_count, padded

KEPT_ROLES = ("numeric", "boolean")  # other columns that join the sequence as numbers


def step_count(lengths: np.ndarray) -> int:
    """The steps the model reads: the longest training sequence and a quarter more (longer ones
    may come at predict), at most MAX_STEPS."""
    longest = int(lengths.max()) if len(lengths) else 1
    return int(min(MAX_STEPS, max(1, longest + longest // 4)))


def extra_columns(frame: pd.DataFrame, skip: set[str], roles: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """({column: numeric | boolean} joining the sequence, {column: why dropped})."""
    kept, dropped = {}, {}
    for name in frame.columns:
        if name in skip:
            continue
        role, why = ("dropped", "dropped by data.columns") if roles.get(name) == "drop" else \
            (roles[name], None) if name in roles else column_role(frame[name], len(frame))
        if role in KEPT_ROLES:
            kept[name] = role
        elif role != "dropped":
            dropped[name] = f"a {role} column beside a sequence is not read yet (numbers and booleans are)"
        else:
            dropped[name] = why
    return kept, dropped


def extra_numbers(frame: pd.DataFrame, extras: list[dict]) -> np.ndarray:
    """(rows, extras) raw numbers of the other columns (NaN where missing)."""
    columns = []
    for col in extras:
        series = frame[col["name"]]
        values = bool_numbers(series) if col["role"] == "boolean" else pd.to_numeric(series, errors="coerce")
        columns.append(np.asarray(values, dtype=np.float64))
    stacked = np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))
    return np.where(np.isfinite(stacked), stacked, np.nan).astype(np.float32)


def fit_extra(values: np.ndarray, name: str, role: str, clip_quantile: float) -> dict:
    present = values[np.isfinite(values)].astype(np.float64)
    if not len(present):
        present = np.zeros(1)
    lo, median, hi = np.quantile(present, [clip_quantile, 0.5, 1 - clip_quantile]) if clip_quantile > 0 else \
        (present.min(), np.median(present), present.max())
    clipped = np.clip(present, lo, hi)
    spread = float(clipped.std())
    return {"name": name, "role": role, "median": float(median), "lo": float(lo), "hi": float(hi),
            "center": float(clipped.mean()), "scale": spread if spread > 0 else 1.0}


def fit_sequences(train: pd.DataFrame, column: str, extras: dict[str, str], clip_quantile: float) -> dict:
    """The state fitted on the training rows (see the module's docstring)."""
    features = feature_count(train[column], column)
    rows = cells(train[column], features, column)
    lengths = np.array([len(c) for c in rows])
    steps = step_count(lengths)
    present = np.concatenate([c[:steps] for c in rows] + [np.zeros((0, features))])
    present = np.where(np.isfinite(present), present, np.nan)
    mean, std = np.nanmean(present, axis=0), np.nanstd(present, axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise DataError(f"column '{column}': some feature has no finite value in any training step, or values too "
                        "large to scale")
    state = {"kind": "sequence", "column": column, "steps": steps, "features": features,
             "mean": mean.tolist(), "std": np.where(std > 0, std, 1.0).tolist(),
             "cut_in_training": int((lengths > steps).sum())}
    numbers = extra_numbers(train, [{"name": n, "role": r} for n, r in extras.items()])
    state["extras"] = [fit_extra(numbers[:, i], name, role, clip_quantile) for i, (name, role) in enumerate(extras.items())]
    return state


class SequenceFront(nn.Module):
    """Raw steps (batch, steps, features), lengths (batch,) [, raw numbers (batch, extras)] ->
    the model's inputs: standardized steps, zero after each end; lengths within [1, steps];
    the numbers imputed, clipped and standardized."""

    def __init__(self, state: dict):
        super().__init__()
        self.register_buffer("mean", torch.tensor(state["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(state["std"], dtype=torch.float32))
        extras = state.get("extras", [])
        self.has_extras = bool(extras)
        for key in ("median", "lo", "hi", "center", "scale"):
            self.register_buffer(f"extra_{key}", torch.tensor([c[key] for c in extras], dtype=torch.float32))

    def forward(self, values: torch.Tensor, lengths: torch.Tensor, *numbers: torch.Tensor) -> tuple[torch.Tensor, ...]:
        lengths = lengths.clamp(1, values.shape[1])
        inside = torch.arange(values.shape[1], device=values.device)[None, :] < lengths[:, None]
        scaled = (values - self.mean) / self.std
        scaled = torch.where(inside[:, :, None] & torch.isfinite(scaled), scaled, torch.zeros_like(scaled))
        if not self.has_extras:
            return scaled, lengths
        x = numbers[0]
        x = torch.where(torch.isfinite(x), x, self.extra_median)
        x = (torch.minimum(torch.maximum(x, self.extra_lo), self.extra_hi) - self.extra_center) / self.extra_scale
        return scaled, lengths, x


def raw_inputs(state: dict, frame: pd.DataFrame) -> tuple[tuple[torch.Tensor, ...], int]:
    """(the front's raw inputs for the rows of `frame`, sequences cut to the run's steps)."""
    column = state["column"]
    if column not in frame.columns:
        raise DataError(f"the input lacks the sequence column '{column}' that the model was trained on")
    values, lengths, cut = padded(cells(frame[column], state["features"], column), state["steps"], state["features"])
    inputs = [torch.from_numpy(values), torch.from_numpy(lengths)]
    if state.get("extras"):
        absent = [c["name"] for c in state["extras"] if c["name"] not in frame.columns]
        if absent:
            raise DataError(f"the input lacks column(s) {absent[:5]} that the model was trained on")
        inputs.append(torch.from_numpy(extra_numbers(frame, state["extras"])))
    return tuple(inputs), cut


def encoded(state: dict, frame: pd.DataFrame) -> tuple[torch.Tensor, ...]:
    """The model's inputs for the rows of `frame`."""
    inputs, _ = raw_inputs(state, frame)
    with torch.no_grad():
        return SequenceFront(state)(*inputs)
