"""Infer each column's role (numeric, categorical, boolean, datetime, text, image, sound, dropped) and the task."""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaletrain.data.pixels import is_image_column
from scaletrain.data.sounds import is_sound_column
from scaletrain.errors import ConfigError, TargetError
from scaletrain.tasks import task_of
from scaletrain.tasks.infer import infer_task

PHRASE_WORDS = 2.5  # mean words per value from which mostly distinct short strings are text (names have 2)
_BOOL_WORDS = {"true", "false", "yes", "no", "y", "n", "t", "f"}


@dataclass
class Schema:
    """Column roles, the target and the task, plus notes for the user about what was dropped."""

    target: str | None
    task: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    boolean: list[str] = field(default_factory=list)
    datetime: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # free text: tokenized, a bag of word pieces
    image: list[str] = field(default_factory=list)  # image paths, bytes or data URIs: each its own encoder
    sound: list[str] = field(default_factory=list)  # sound clips (paths, bytes, data URIs): each its own encoder
    dropped: dict[str, str] = field(default_factory=dict)  # column -> reason


def find_target(frame: pd.DataFrame, target: str | None, source: str) -> str:
    """Return the target column name, or raise TargetError listing columns and the closest match."""
    columns = [str(c) for c in frame.columns]
    if target is None:
        for guess in ("target", "label", "labels", "class", "y"):
            if guess in columns:
                return guess
        raise TargetError(f"no target given for '{source}'; add --target COLUMN (columns: {', '.join(columns[:20])})")
    if target in columns:
        return target
    close = difflib.get_close_matches(target, columns, n=1, cutoff=0.3)
    lowered = {c.lower(): c for c in columns}
    best = lowered.get(target.lower()) or (close[0] if close else None)
    hint = f"; did you mean '{best}'?" if best else ""
    raise TargetError(f"target column '{target}' not found in '{source}'{hint} (columns: {', '.join(columns[:20])})")


def _as_bool(series: pd.Series) -> bool:
    if series.dtype == bool:
        return True
    values = series.dropna()
    if values.empty or values.dtype.kind in "fiu":
        return False
    words = set(values.astype(str).str.strip().str.lower().unique())
    return len(words) <= 2 and words <= _BOOL_WORDS


def _looks_datetime(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    values = series.dropna().astype(str)
    if values.empty or values.str.len().median() < 6:
        return False
    sample = values.iloc[:200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return parsed.notna().mean() > 0.9


def column_role(series: pd.Series, n_rows: int) -> tuple[str, str | None]:
    """Return (role, reason) for one feature column; reason explains a drop."""
    values = series.dropna()
    if values.empty:
        return "dropped", "all values missing"
    n_unique = values.nunique()
    if n_unique <= 1:
        return "dropped", "constant"
    if is_image_column(series):  # before any test that reads the cells as text (bytes are not)
        return "image", None
    if is_sound_column(series):
        return "sound", None
    if _as_bool(series):
        return "boolean", None
    if series.dtype.kind in "fiu":
        is_int = series.dtype.kind in "iu" or np.all(np.mod(values, 1) == 0)
        if is_int and n_unique == n_rows and n_rows > 20 and (values.is_monotonic_increasing or "id" in str(series.name).lower()):
            return "dropped", "ID-like (unique, increasing integers)"
        return "numeric", None
    if _looks_datetime(series):
        return "datetime", None
    counts = values.value_counts()  # parse each distinct value once: categories repeat a lot
    parsed = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce").notna().to_numpy()
    if counts.to_numpy()[parsed].sum() > 0.95 * len(values):
        return "numeric", None
    text = values.astype(str)
    # long strings, or short phrases (a review's title, "Runs small, love it": words carry the
    # meaning, as a category they are mostly seen once; clothing reviews → rating R² 0.30 → 0.61)
    wordy = text.str.len().mean() > 30 or (text.str.count(r"\s+") + 1).mean() >= PHRASE_WORDS
    if n_unique == len(values) and n_rows > 20:
        if wordy:
            return "text", None
        return "dropped", "ID-like (a different value on every row)"
    if wordy and n_unique > 0.5 * len(values):
        return "text", None
    return "categorical", None


def check_target(y: pd.Series, task: str, column: str) -> None:
    """Raise TargetError if the target cannot be learned."""
    values = y.dropna()
    if values.empty:
        raise TargetError(f"target column '{column}' has no values; pick a column with labels")
    classifies = task_of(task).classifies
    if classifies and values.nunique() < 2:
        raise TargetError(f"target column '{column}' has a single class ({values.iloc[0]!r}); "
                          "a classifier needs at least two")
    if classifies:
        counts = values.value_counts()
        once = int((counts == 1).sum())
        if len(counts) > 2 and once > len(counts) / 2:  # no split can give most classes a training row
            raise TargetError(f"target column '{column}' has too few rows per class: {len(counts):,} classes in "
                              f"{len(values):,} rows, {once:,} of them seen once; a classifier needs several rows of "
                              "each class (is it an ID, or a number to regress: --set data.task=regression?)")
    if not classifies:
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.isna().any():
            raise TargetError(f"target column '{column}' is not numeric, so it cannot be a regression target; "
                              "use --set data.task=classification")
        if not np.isfinite(numeric).all():
            raise TargetError(f"target column '{column}' holds inf values; remove those rows")


ROLES = ("numeric", "categorical", "boolean", "datetime", "text", "image", "sound", "drop")


def infer_schema(frame: pd.DataFrame, target: str | None, task: str = "auto",
                 roles: dict[str, str] | None = None) -> Schema:
    """Return the Schema of a table: roles of every feature column and the task.

    `roles` (config data.columns) overrides inference for the columns it names.
    """
    roles = roles or {}
    unknown = [c for c in roles if c not in frame.columns]
    if unknown:
        raise ConfigError(f"data.columns names column '{unknown[0]}', which the data does not have")
    bad = [r for r in roles.values() if r not in ROLES]
    if bad:
        raise ConfigError(f"data.columns role '{bad[0]}' is not one of {', '.join(ROLES)}")
    task = infer_task(frame[target], task) if target is not None else task
    if target is not None:
        check_target(frame[target], task, target)
    schema = Schema(target=target, task=task)
    for column in frame.columns:
        if column == target:
            continue
        if column in roles:
            role, reason = ("dropped", "dropped by data.columns") if roles[column] == "drop" else (roles[column], None)
        else:
            role, reason = column_role(frame[column], len(frame))
        if role == "dropped":
            schema.dropped[str(column)] = reason
        else:
            getattr(schema, role).append(str(column))
    return schema
