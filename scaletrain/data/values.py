"""How raw cell values read as numbers, booleans, date parts and category keys: one reading
shared by the statistics, the shard writer and fitted preprocessing, so all three agree."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

UNKNOWN = "__unknown__"
MISSING = "__missing__"
TRUE_WORDS = {"true", "yes", "y", "t", "1", "1.0"}
DATE_PARTS = ("year", "month", "day", "day_of_week", "hour", "minute")


def label_key(value) -> str:
    """Return the lookup key of a label, so 1, 1.0, '1' and np.int64(1) agree."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def json_value(value):
    """Return a value as a plain JSON type (numpy scalars become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def bool_numbers(series: pd.Series) -> pd.Series:
    """Return 1.0 for true-like values, 0.0 for others, NaN where missing (vectorized)."""
    kind = series.dtype.kind
    if kind == "b":
        return series.astype(np.float64)
    if kind in "iuf":  # of numbers only 1 reads as true, as "1" and "1.0" do below
        return pd.Series(np.where(series.isna(), np.nan, (series == 1).astype(np.float64)), index=series.index)
    words = series.astype(str).str.strip().str.lower()
    return pd.Series(np.where(series.isna(), np.nan, words.isin(TRUE_WORDS).astype(np.float64)), index=series.index)


def date_parts(series: pd.Series, parts: list[str]) -> dict[str, pd.Series]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        when = pd.to_datetime(series, errors="coerce", format="mixed")
    return {p: getattr(when.dt, p).astype(np.float64) for p in parts}


def numeric_columns(frame: pd.DataFrame, spec: dict) -> dict[str, pd.Series]:
    """Return every column that feeds the numeric block, by derived name."""
    out: dict[str, pd.Series] = {}
    for name in spec["numeric_raw"]:
        out[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    for name in spec["boolean"]:
        out[name] = bool_numbers(frame[name])
    for name, parts in spec["datetime"].items():
        for part, series in date_parts(frame[name], parts).items():
            out[f"{name}.{part}"] = series
    return out


def category_strings(series: pd.Series) -> pd.Series:
    """Return each value's label_key, MISSING where absent; vectorized for the common dtypes
    (a Python call per value would dominate preparing millions of rows)."""
    if isinstance(series.dtype, pd.CategoricalDtype):  # else value_counts lists unused categories
        series = series.astype(object)
    kind = series.dtype.kind
    if kind in "iu":
        return series.astype(str)
    if kind == "O" and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return series.where(series.notna(), MISSING)
    return series.map(lambda v: MISSING if pd.isna(v) else label_key(v))


def cell_share(series: pd.Series, looks_like) -> float:
    """The share of a string or binary column's non-empty cells (its first 1,000) for which
    `looks_like(cell)` holds: whether a column holds images or sound clips; 0 for other columns."""
    if not (series.dtype == object or pd.api.types.is_string_dtype(series)):
        return 0.0
    values = series.dropna()
    sample = values[values.map(lambda v: not (isinstance(v, str) and not v.strip()))].iloc[:1000]
    return float(sample.map(looks_like).mean()) if len(sample) else 0.0
