"""The fast reader of `prepare`: CSV and Parquet parsed and typed by Arrow, without pandas.

pandas' chunked CSV parser plus the conversions after it cost ~4x a bare Arrow read
(profile in BENCHMARKS.md), so clean files are read here: every column straight into the
type its role needs, in fixed-size Arrow tables. Anything Arrow would read differently from
the pandas path (odd encodings, spaces after delimiters, headerless files, datetimes, a value
that does not parse as its column's type) raises SlowPath, and the caller reads the file with
pandas instead, which coerces or names the bad value. Results are the same either way.
"""
from __future__ import annotations

import queue
import threading
from pathlib import PurePosixPath
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scaletrain.data.manifest import filesystem
from scaletrain.errors import DataError
from scaletrain.modalities.table.tables import decode_text, sniff_csv, split_suffix

BLOCK_BYTES = 4 << 20
READ_AHEAD = 2             # batches parsed ahead of the one being split, summarized and written


class SlowPath(Exception):
    """This file needs the pandas reader (raised before or while reading it)."""


def read_types(sample: pd.DataFrame, schema, target_type: pa.DataType) -> dict[str, pa.DataType] | None:
    """Return the Arrow type to read each used column as, or None where Arrow cannot give
    what the pandas path gives (datetime parts, float-valued categories)."""
    if schema.datetime or schema.image or schema.sound:  # media cells are files to read: the pandas path reads them
        return None
    types = {name: pa.float64() for name in schema.numeric}
    for name in schema.boolean:  # numbers compare with 1, words go through the true-word list
        kind = sample[name].dtype.kind
        if kind == "b" or pd.api.types.infer_dtype(sample[name], skipna=True) == "boolean":  # True/False + gaps
            types[name] = pa.bool_()
        else:
            types[name] = pa.float64() if kind in "iuf" else pa.string()
    for name in schema.text:
        types[name] = pa.string()
    for name in schema.categorical:
        kind = sample[name].dtype.kind
        if kind in "iu":
            types[name] = pa.int64()  # cast to text after: "007" -> "7", as pandas' int parse gives
        elif kind == "O" and pd.api.types.infer_dtype(sample[name], skipna=True) in ("string", "empty"):
            types[name] = pa.string()
        else:
            return None
    types[schema.target] = target_type
    return types


def read_arrow_chunks(url: str, types: dict[str, pa.DataType], rows: int) -> Iterator[pa.Table]:
    """Yield the used columns of a CSV/TSV or Parquet file as Arrow tables of exactly `rows`
    rows (the last may be shorter); raise SlowPath where the pandas reader is needed."""
    fs, path = filesystem(url)
    suffix, compression = split_suffix(PurePosixPath(path))
    try:
        if suffix in (".parquet", ".pq"):
            batches = _parquet_batches(fs, path, types, rows)
        elif suffix in (".csv", ".tsv", ".txt"):
            batches = _csv_batches(fs, path, suffix, compression, types)
        else:
            raise SlowPath(suffix)
        yield from _exact_chunks(read_ahead(batches), rows)
    except SlowPath:
        raise
    except DataError as exc:
        raise SlowPath(str(exc)) from None
    except (pa.ArrowException, OSError, EOFError, ValueError, KeyError) as exc:  # the pandas path names it
        raise SlowPath(str(exc)) from None


def read_ahead(batches: Iterator, depth: int = READ_AHEAD) -> Iterator:
    """Yield the items of `batches`, produced in a thread `depth` items ahead.

    Arrow parses and decodes with the GIL released, so the next batch is parsed while this
    thread splits, summarizes and writes the current one: one 200 MB file alone takes 1.3 s
    instead of 2.5 s (BENCHMARKS.md), which matters when the last file of a `prepare` runs
    alone while the other cores idle. The producer's errors are raised here; stopping early stops and closes it.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop, done = threading.Event(), object()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            items.put(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # a generator's `with` blocks close their files in this thread

    worker = threading.Thread(target=produce, name="scaletrain-read-ahead", daemon=True)
    worker.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


def _csv_batches(fs, path: str, suffix: str, compression, types: dict) -> Iterator[pa.RecordBatch]:
    from pandas._libs.parsers import STR_NA_VALUES  # pandas' missing-value words, for the same NaNs

    with fs.open(path, "rb", compression=compression) as fh:
        head = fh.read(1 << 16)
    if len(head) == 1 << 16:  # whole lines only: a cut inside a UTF-8 character is no other encoding
        head = head[:head.rfind(b"\n") + 1] or head
    text, encoding = decode_text(head, path)
    delimiter, has_header = sniff_csv(text, suffix)
    if encoding != "utf-8-sig" or head.startswith(b"\xef\xbb\xbf") or not has_header or f"{delimiter} " in text:
        raise SlowPath("needs pandas' options")  # pandas strips spaces after delimiters; Arrow keeps them
    native = _is_local(fs) and compression is None  # Arrow's own file reads skip Python's I/O layer
    with (pa.OSFile(path, "rb") if native else fs.open(path, "rb", compression=compression)) as fh:
        reader = pacsv.open_csv(
            fh, read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                                 null_values=sorted(STR_NA_VALUES), strings_can_be_null=True))
        yield from reader


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _parquet_batches(fs, path: str, types: dict, rows: int) -> Iterator[pa.RecordBatch]:
    with fs.open(path, "rb") as fh:
        parquet = pq.ParquetFile(fh)
        names = parquet.schema_arrow.names
        if len(set(names)) != len(names) or any(n not in names for n in types):
            raise SlowPath("duplicate or missing columns")
        for batch in parquet.iter_batches(batch_size=rows, columns=list(types)):
            yield pa.RecordBatch.from_arrays([_typed(batch.column(n), t) for n, t in types.items()], names=list(types))


def _typed(array: pa.Array, kind: pa.DataType) -> pa.Array:
    if array.type == kind:
        return array
    if pa.types.is_string(kind) and not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise SlowPath("text from another type")  # pandas' text of a number or a date differs from Arrow's
    return array.cast(kind)  # raises ArrowInvalid (-> SlowPath) where a value does not fit


def _exact_chunks(batches, rows: int) -> Iterator[pa.Table]:
    """Re-cut batches of any size into tables of `rows` rows: one row group each in the shards."""
    pending, count = [], 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)
