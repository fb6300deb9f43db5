"""`scaletrain prepare`: one streaming pass from any number of table files to Parquet shards.

Per input file (in parallel processes where there are several local files and cores): read
in chunks, bring columns to one canonical type per role, give every row its split from a
seeded hash of (file, row), update mergeable statistics on the training rows, and append to
Parquet shards of about `shard_size` bytes. Memory is bounded by a chunk and the open shards
whatever the input size. Shards are written under temporary names and renamed when whole;
the manifest is written last, so a directory with a manifest is always complete.
"""
from __future__ import annotations

import gc
import json
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scaletrain import __version__
from scaletrain.data.arrow_read import SlowPath, read_arrow_chunks, read_types
from scaletrain.data.chunks import CHUNK_ROWS, expand_sources, read_chunks
from scaletrain.data.manifest import (CHECKSUM, FORMAT, FORMAT_VERSION, MANIFEST, SPLITS, STATS, filesystem,
                                      join, write_atomic)
from scaletrain.data.preprocess import _TRUE, MISSING, _bool_numbers, _category_strings, table_spec
from scaletrain.data.schema import Schema, find_target, infer_schema
from scaletrain.data.stats import TableStats, TargetStats
from scaletrain.errors import DataError
from scaletrain.runtime import keep_freed_memory

SAMPLE_ROWS = 100_000      # rows of the first file that roles are inferred from
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


# ---------------------------------------------------------------- canonical columns
@dataclass
class Layout:
    """What every chunk is brought to: the roles, the shard schema and the split rule."""

    schema: Schema
    spec: dict
    columns: list[str]
    arrow_schema: pa.Schema
    val_fraction: float
    test_fraction: float
    seed: int
    read_types: dict | None = None   # the Arrow reader's column types; None: pandas reads every file

    def to_plain(self) -> dict:
        s = self.schema
        return {"target": s.target, "task": s.task, "numeric": s.numeric, "categorical": s.categorical,
                "boolean": s.boolean, "datetime": s.datetime, "dropped": s.dropped}


def target_type(sample: pd.Series, task: str) -> pa.DataType:
    if task == "regression" or sample.dtype.kind == "f":
        return pa.float64()
    if sample.dtype.kind in "iu":
        return pa.int64()
    if sample.dtype.kind == "b":
        return pa.bool_()
    return pa.string()


def make_layout(sample: pd.DataFrame, target: str | None, task: str, roles: dict, source: str,
                val_fraction: float, test_fraction: float, seed: int) -> Layout:
    sample.columns = [str(c) for c in sample.columns]
    target = find_target(sample, target, source)
    sample = sample[sample[target].notna()]
    schema = infer_schema(sample, target, task, roles)
    fields = ([pa.field(c, pa.float64()) for c in schema.numeric + schema.boolean]
              + [pa.field(c, pa.timestamp("ns")) for c in schema.datetime]
              + [pa.field(c, pa.string()) for c in schema.categorical]
              + [pa.field(target, target_type(sample[target], schema.task))])
    return Layout(schema, table_spec(sample, schema), [f.name for f in fields], pa.schema(fields),
                  val_fraction, test_fraction, seed, read_types(sample, schema, fields[-1].type))


def canonical(chunk: pd.DataFrame, layout: Layout, url: str) -> pd.DataFrame:
    """Return the chunk with the layout's columns in their shard types; rows without a target dropped."""
    chunk.columns = [str(c) for c in chunk.columns]
    missing = [c for c in layout.columns if c not in chunk.columns]
    if missing:
        raise DataError(f"'{url}' lacks column '{missing[0]}' that the other files have; give files with one schema")
    s = layout.schema
    chunk = chunk[chunk[s.target].notna()]
    out = {}
    for name in s.numeric:
        out[name] = pd.to_numeric(chunk[name], errors="coerce").astype(np.float64)
    for name in s.boolean:
        out[name] = _bool_numbers(chunk[name])
    for name in s.datetime:
        out[name] = pd.to_datetime(chunk[name], errors="coerce", format="mixed")
    for name in s.categorical:
        out[name] = _category_strings(chunk[name]).replace(MISSING, None)
    out[s.target] = chunk[s.target]
    return pd.DataFrame(out, index=chunk.index)[layout.columns]


def canonical_arrow(table: pa.Table, layout: Layout) -> pa.Table:
    """The Arrow reader's twin of `canonical`: the same columns, types and values."""
    s = layout.schema
    target = table[s.target]
    if target.null_count:
        table = table.filter(pc.is_valid(target))
    columns = [pc.cast(table[name], pa.float64()) for name in s.numeric]
    columns += [_bool_arrow(table[name]) for name in s.boolean]
    columns += [table[name] if table[name].type == pa.string() else pc.cast(table[name], pa.string())
                for name in s.categorical]
    columns.append(table[s.target])
    # one chunk per column: the reader's blocks do not line up with chunks, and three filters
    # plus a write of unchunked columns cost less than of chunked ones (0.20 s -> 0.16 s a file)
    return pa.Table.from_arrays(columns, schema=layout.arrow_schema).combine_chunks()


def _bool_arrow(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """1.0 for true-like values, 0.0 for others, missing kept: as `_bool_numbers` does."""
    if pa.types.is_boolean(column.type):
        return pc.cast(column, pa.float64())
    if pa.types.is_floating(column.type):
        return pc.cast(pc.equal(column, 1.0), pa.float64())
    words = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    truth = pc.cast(pc.is_in(words, value_set=pa.array(sorted(_TRUE))), pa.float64())
    return pc.if_else(pc.is_valid(column), truth, pa.scalar(None, pa.float64()))


def to_arrow(frame: pd.DataFrame, layout: Layout, url: str) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, schema=layout.arrow_schema, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        column = next((f.name for f in layout.arrow_schema if _fails(frame[f.name], f.type)), layout.schema.target)
        raise DataError(f"'{url}' column '{column}' holds values that do not fit its type in the other files "
                        f"({layout.arrow_schema.field(column).type}): {str(exc).splitlines()[0]}") from None


def _fails(series: pd.Series, kind: pa.DataType) -> bool:
    try:
        pa.array(series, type=kind, from_pandas=True)
        return False
    except (pa.ArrowException, ValueError, TypeError):
        return True


def split_codes(file_index: int, start: int, n: int, layout) -> np.ndarray:
    """Return each row's split (0 train, 1 val, 2 test) from a seeded hash of (file, row);
    `layout` gives seed, val_fraction and test_fraction.

    A hash rather than a shuffle: the assignment needs no memory, does not depend on chunk
    sizes or on how files are spread over processes, and is the same on every re-run.
    """
    with np.errstate(over="ignore"):
        x = (np.uint64(file_index) << np.uint64(40)) + np.arange(start, start + n, dtype=np.uint64)
        x = x + np.uint64(layout.seed) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finalizer
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < layout.test_fraction, 2, np.where(u < layout.test_fraction + layout.val_fraction, 1, 0))


# ---------------------------------------------------------------- one file -> shards
class ChecksummingFile:
    """A write-only file that checksums what passes through, so a shard's checksum costs no
    second read (Parquet writes strictly forward)."""

    def __init__(self, handle):
        self.handle, self.crc, self.closed = handle, 0, False

    def write(self, data) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.handle.tell()

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
        self.closed = True


class ShardWriter:
    """Appends row groups to Parquet files of one split, starting a new file past `max_bytes`."""

    def __init__(self, fs, root: str, split: str, stem: str, schema: pa.Schema, max_bytes: int):
        self.fs, self.root, self.split, self.stem, self.schema = fs, root, split, stem, schema
        self.max_bytes, self.part, self.writer, self.handle, self.rows, self.bytes = max_bytes, 0, None, None, 0, 0
        self.row_groups: list[int] = []
        self.done: list[dict] = []

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.name = f"{self.split}-{self.stem}-{self.part:04d}.parquet"
            self.handle = ChecksummingFile(self.fs.open(join(self.root, self.name + ".tmp"), "wb"))
            # Shards are working data, not archives: stored plain, without compression, dictionaries
            # or page statistics. Per 2 M rows of the benchmark table: written with 0.33 s of CPU
            # vs 0.42 s with lz4 text (0.97 s with lz4 everywhere, zstd 1.6 s), 206 vs 166 MB.
            self.writer = pq.ParquetWriter(self.handle, self.schema, compression="none", use_dictionary=False,
                                           write_statistics=False)
        self.writer.write_table(table, row_group_size=len(table) or 1)
        self.rows += len(table)
        self.row_groups.append(len(table))
        self.bytes += table.nbytes
        if self.bytes >= self.max_bytes:
            self.close()

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.handle.close()
        path = join(self.root, self.name)
        self.fs.mv(path + ".tmp", path)
        self.done.append({"file": self.name, "split": self.split, "rows": self.rows, "row_groups": self.row_groups,
                          "bytes": self.fs.size(path), CHECKSUM: f"{self.handle.crc:08x}"})
        self.writer, self.rows, self.bytes, self.row_groups, self.part = None, 0, 0, [], self.part + 1

    def discard(self) -> None:
        """Remove everything this writer wrote (the file is being read again another way)."""
        if self.writer is not None:
            self.writer.close()
            self.handle.close()
            self.fs.rm(join(self.root, self.name + ".tmp"))
        for shard in self.done:
            self.fs.rm(join(self.root, shard["file"]))
        self.writer, self.done = None, []


@dataclass
class FileResult:
    shards: list[dict]
    stats: TableStats
    target: TargetStats
    rows: dict


def prepare_file(url: str, file_index: int, layout: Layout, out: str, max_bytes: int, chunk_rows: int,
                 on_rows=None) -> FileResult:
    """Turn one input file into shards and statistics of its training rows: through Arrow
    where the file allows, else through pandas (the same shards and statistics, slower)."""
    if layout.read_types is not None:
        reported = [0]

        def count(rows: int) -> None:
            reported[0] += rows
            if on_rows is not None:
                on_rows(rows)

        try:
            return _prepare_file(url, file_index, layout, out, max_bytes, chunk_rows, count, fast=True)
        except SlowPath:  # what the fast pass wrote is gone; its rows are counted again
            if on_rows is not None:
                on_rows(-reported[0])
    return _prepare_file(url, file_index, layout, out, max_bytes, chunk_rows, on_rows, fast=False)


def _canonical_chunks(url: str, layout: Layout, chunk_rows: int, fast: bool):
    """Yield (Arrow table in shard types, the same as a pandas frame or None) per chunk."""
    if fast:
        for table in read_arrow_chunks(url, layout.read_types, chunk_rows):
            yield canonical_arrow(table, layout), None
        return
    for chunk in read_chunks(url, chunk_rows):
        frame = canonical(chunk, layout, url)
        yield to_arrow(frame, layout, url), frame


def _prepare_file(url, file_index, layout, out, max_bytes, chunk_rows, on_rows, fast: bool) -> FileResult:
    fs, root = filesystem(out)
    stem = f"{file_index:05d}"
    writers = {split: ShardWriter(fs, root, split, stem, layout.arrow_schema, max_bytes) for split in SPLITS}
    stats, target = TableStats(layout.spec, layout.schema.categorical), TargetStats(layout.schema.task)
    counts, start, name = {split: 0 for split in SPLITS}, 0, layout.schema.target
    try:
        for table, frame in _canonical_chunks(url, layout, chunk_rows, fast):
            codes = split_codes(file_index, start, len(table), layout)
            start += len(table)
            if on_rows is not None:
                on_rows(len(table))
            for split, code in SPLIT_CODES.items():  # splits are cheap Arrow filters of one table
                mask = codes == code
                if mask.any():
                    part = table.filter(pa.array(mask))
                    writers[split].write(part)
                    counts[split] += len(part)
                    if split == "train" and frame is None:
                        stats.update_arrow(part)
                        target.update_arrow(part[name])
            if frame is not None:
                train = frame[codes == SPLIT_CODES["train"]]
                stats.update(train)
                target.update(train[name])
    except SlowPath:
        for writer in writers.values():
            writer.discard()
        raise
    finally:
        for writer in writers.values():
            writer.close()
    return FileResult([s for w in writers.values() for s in w.done], stats, target, counts)


def _prepare_job(args) -> tuple:
    """Run prepare_file in a worker process; return its result as plain data and tensors
    (a sketch object does not cross process boundaries, its serialized form does)."""
    result = prepare_file(*args)
    return result.shards, result.stats.to_parts(), result.target.to_plain(), result.rows


def _from_job(shards, stats_parts, target_plain, rows) -> FileResult:
    return FileResult(shards, TableStats.from_parts(*stats_parts), TargetStats.from_plain(target_plain), rows)


# ---------------------------------------------------------------- the command
def prepare_shards(sources: list[str], out: str, target: str | None = None, task: str = "auto",
                   roles: dict | None = None, shard_size: int = 256 << 20, val_fraction: float = 0.15,
                   test_fraction: float = 0.15, seed: int = 0, workers: int | None = None,
                   chunk_rows: int = CHUNK_ROWS, image_size: int | None = None, channels: int | None = None,
                   verbose: bool = True) -> dict:
    """Prepare shards and the manifest from table files or one image folder; return the manifest.

    On any error the half-made directory is removed: what exists afterwards is complete.
    """
    from scaletrain.data.image_shards import is_image_folder, prepare_image_shards

    images = len(sources) == 1 and is_image_folder(sources[0])
    files = [] if images else expand_sources(sources)
    fs, root = filesystem(out)
    if fs.exists(join(root, MANIFEST)) or (fs.isdir(root) and fs.ls(root)):
        raise DataError(f"'{out}' already exists and is not empty; remove it or choose another --out")
    fs.makedirs(root, exist_ok=True)
    # Per-chunk buffers come and go ~100 times a file: glibc told to keep freed memory, and
    # Arrow allocating there too instead of in its jemalloc (which returns pages eagerly),
    # halve the system time (3 files: 2.0 s -> 1.0 s). Forked workers inherit both.
    keep_freed_memory()
    previous_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        if images:
            return prepare_image_shards(sources[0], out, fs, root, image_size, channels, shard_size, val_fraction,
                                        test_fraction, seed, workers, verbose)
        return _prepare(files, sources, out, fs, root, target, task, roles, shard_size, val_fraction,
                        test_fraction, seed, workers, chunk_rows, verbose)
    except BaseException:
        fs.rm(root, recursive=True)
        raise
    finally:
        pa.set_memory_pool(previous_pool)


def _prepare(files, sources, out, fs, root, target, task, roles, shard_size, val_fraction, test_fraction, seed,
             workers, chunk_rows, verbose) -> dict:
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    sample_chunks, rows = [], 0
    for chunk in read_chunks(files[0], chunk_rows):
        sample_chunks.append(chunk)
        rows += len(chunk)
        if rows >= SAMPLE_ROWS:
            break
    if not sample_chunks or rows == 0:
        raise DataError(f"'{files[0]}' holds no data rows")
    layout = make_layout(pd.concat(sample_chunks, ignore_index=True), target, task, roles or {}, files[0],
                         val_fraction, test_fraction, seed)
    local = fs.protocol in ("file", "local") or "file" in fs.protocol
    workers = workers or min(len(files), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    results: list[FileResult] = []
    with Progress(TextColumn("preparing: {task.fields[files]}/%d files, {task.completed:,.0f} rows, "
                             "{task.fields[speed]:,.0f} rows/s" % len(files)), TimeElapsedColumn(),
                  disable=not verbose, transient=True) as progress:
        bar = progress.add_task("prepare", total=None, files=0, speed=0.0)

        def advance(rows: int, files_done: int = 0) -> None:
            task = progress.tasks[0]
            progress.update(bar, advance=rows, files=task.fields["files"] + files_done,
                            speed=(task.completed + rows) / max(time.perf_counter() - started, 1e-9))

        jobs = [(url, i, layout, out, shard_size, chunk_rows) for i, url in enumerate(files)]
        if workers > 1 and local:
            # Largest files first, so no big file starts last and runs alone while the other
            # cores idle; results are merged in file order all the same (deterministic output).
            jobs.sort(key=lambda job: -fs.size(job[0]))
            by_index: dict[int, FileResult] = {}
            gc.freeze()  # forked workers' collections skip the imported modules' objects: ~4% of their time
            try:
                with ProcessPoolExecutor(workers) as pool:  # rows are counted as each file finishes
                    for job, job_result in zip(jobs, pool.map(_prepare_job, jobs)):
                        by_index[job[1]] = result = _from_job(*job_result)
                        advance(sum(result.rows.values()), 1)
            finally:
                gc.unfreeze()
            results = [by_index[i] for i in range(len(files))]
        else:
            for job in jobs:
                results.append(prepare_file(*job, advance))
                advance(0, 1)
    stats, target_stats = results[0].stats, results[0].target
    for result in results[1:]:
        stats.merge(result.stats)
        target_stats.merge(result.target)
    plain, tensors = stats.to_parts()
    return finish(fs, root, results, tensors, started, {
        "kind": "table", "sources": files, "roles": layout.to_plain(), "spec": layout.spec,
        "columns": [{"name": f.name, "type": str(f.type)} for f in layout.arrow_schema],
        "split": split_rule(layout), "stats": plain, "target": target_stats.to_plain()})


def split_rule(layout) -> dict:
    return {"rule": "splitmix64(seed, file, row)", "seed": layout.seed, "val_fraction": layout.val_fraction,
            "test_fraction": layout.test_fraction}


def finish(fs, root: str, results: list, tensors: dict, started: float, fields: dict) -> dict:
    """Write stats.safetensors, then the manifest (last: its presence means complete)."""
    from safetensors.numpy import save  # numpy: prepare never imports torch (2 s per process)

    row_counts = {split: sum(r.rows[split] for r in results) for split in SPLITS}
    if row_counts["train"] == 0:
        raise DataError(f"no training rows in {fields['sources'][:3]}; check the target and the split fractions")
    write_atomic(fs, join(root, STATS), save({k: np.ascontiguousarray(v) for k, v in tensors.items()}))
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "scaletrain_version": __version__, **fields,
                "rows": row_counts, "shards": sorted((s for r in results for s in r.shards), key=lambda s: s["file"]),
                "seconds": round(time.perf_counter() - started, 3)}
    try:
        text = json.dumps(manifest, indent=1, allow_nan=False)
    except ValueError:  # a mean or variance overflowed
        numeric = fields.get("stats", {}).get("numeric", {})
        bad = [k for k, v in numeric.items() if not all(np.isfinite(x) for x in v["moments"].values())]
        raise DataError(f"column '{bad[0] if bad else '?'}' holds values too large to summarize; "
                        "rescale the column or drop it with data.columns") from None
    write_atomic(fs, join(root, MANIFEST), text.encode("utf-8"))
    return manifest
