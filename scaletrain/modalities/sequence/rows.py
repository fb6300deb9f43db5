"""Tables with a sequence column: JSONL or Parquet rows where one column holds, per row, a list
of numbers (one feature per step) or a list of lists (a vector per step), of any length.

Reading finds that column; `padded` turns it into one float array (rows, steps, features)
padded with zeros after each sequence's end, and the sequences' lengths, which the models use
to mask the padding (models/recurrent.py, models/temporal.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.errors import DataError

SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq")
PEEK_BYTES = 1 << 20  # the first line of a JSONL file read to see whether it holds a sequence
MAX_STEPS = 4096      # the longest sequence kept: longer ones are cut (a note says how many)
MAX_FEATURES = 4096   # numbers per step


def is_sequence(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def sequence_columns(frame: pd.DataFrame) -> list[str]:
    """The columns whose first present value is a list (or array) of values."""
    found = []
    for name in frame.columns:
        if frame[name].dtype != object:
            continue
        present = frame[name].dropna()
        if len(present) and is_sequence(present.iloc[0]):
            found.append(str(name))
    return found


def _first_row(path: Path) -> dict | None:
    with open(path, "rb") as handle:
        line = handle.readline(PEEK_BYTES).strip()
    try:
        row = json.loads(line) if line else None
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def holds_sequences(path: Path) -> bool:
    """True for a JSONL or Parquet file with a column of lists."""
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in SUFFIXES:
        return False
    if suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError):
            return False  # the table reader says what is wrong with it
        return any(pa.types.is_list(f.type) or pa.types.is_large_list(f.type) for f in schema)
    row = _first_row(path)
    return row is not None and any(isinstance(v, list) for v in row.values())


def _not_an_object(path: Path) -> str | None:
    """The first line that is not a JSON object, named (each line of JSON lines is one row)."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line) if line.strip() else {}
            except ValueError:
                return f"line {number} is not valid JSON"
            if not isinstance(row, dict):
                return f"line {number} is {type(row).__name__ if row is not None else 'null'}, not an object of the row's fields"
    return None


def read_rows(path: Path) -> pd.DataFrame:
    """The rows of a JSONL or Parquet file, sequences kept as lists (or arrays)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError, TypeError) as exc:  # TypeError: pandas on a line that is `null` or a list
        reason = _not_an_object(path) if suffix not in (".parquet", ".pq") else None
        raise DataError(f"cannot read '{path}' as {'Parquet' if suffix in ('.parquet', '.pq') else 'JSON lines'}: "
                        f"{reason or str(exc)[:200]}") from None
    if frame.empty:
        raise DataError(f"'{path}' holds no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def the_sequence_column(frame: pd.DataFrame, where: str) -> str:
    """The one column of sequences a table holds."""
    found = sequence_columns(frame)
    if not found:
        raise DataError(f"'{where}' has no column of sequences (lists of numbers)")
    if len(found) > 1:
        raise DataError(f"'{where}' has {len(found)} columns of sequences ({', '.join(found[:5])}); one is read: "
                        "drop the others with --set data.columns.NAME=drop, or join them into one list of vectors "
                        "per step")
    return found[0]


def steps_of(value, row: int, column: str) -> np.ndarray:
    """One cell as a float array (steps, features); DataError naming the row if it is not one."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.zeros((0, 0))
    if not is_sequence(value):
        raise DataError(f"row {row}, column '{column}': expected a list of numbers or of lists, got "
                        f"{type(value).__name__}")
    if isinstance(value, np.ndarray) and value.dtype == object:  # Parquet's list of lists: arrays in an array
        value = list(value)
    try:
        steps = np.asarray([np.asarray(v, dtype=np.float64) for v in value] if len(value) and is_sequence(value[0])
                           else value, dtype=np.float64)
    except (ValueError, TypeError):
        raise DataError(f"row {row}, column '{column}': the steps are not all numbers, or not all vectors of one "
                        "length") from None
    if steps.ndim == 1:
        steps = steps[:, None]
    if steps.ndim != 2:
        raise DataError(f"row {row}, column '{column}': expected a list of numbers or of equal-length lists")
    return steps


def feature_count(series: pd.Series, column: str) -> int:
    """Numbers per step, from the first non-empty sequence."""
    for row, value in zip(series.index, series.to_numpy()):
        steps = steps_of(value, row, column)
        if len(steps):
            if steps.shape[1] > MAX_FEATURES:
                raise DataError(f"column '{column}' has {steps.shape[1]:,} numbers per step; at most "
                                f"{MAX_FEATURES:,} are read")
            return int(steps.shape[1])
    raise DataError(f"column '{column}' holds no non-empty sequence")


def cells(series: pd.Series, features: int, column: str) -> list[np.ndarray]:
    """Each row's steps (steps, features); DataError naming a row (by its label in the table
    read) whose vectors have another width."""
    found = []
    for row, value in zip(series.index, series.to_numpy()):
        cell = steps_of(value, row, column)
        if len(cell) and cell.shape[1] != features:
            raise DataError(f"row {row}, column '{column}': {cell.shape[1]} numbers per step where the others have "
                            f"{features}")
        found.append(cell)
    return found


def padded(rows: list[np.ndarray], steps: int, features: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(values (rows, steps, features) zero after each sequence's end, lengths, rows cut): each
    sequence cut to its first `steps` steps."""
    values = np.zeros((len(rows), steps, features), np.float32)
    lengths = np.zeros(len(rows), np.int64)
    cut = 0
    for row, cell in enumerate(rows):
        cut += len(cell) > steps
        kept = cell[:steps]
        values[row, :len(kept)] = kept
        lengths[row] = len(kept)
    return values, lengths, cut
