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
import posixpath
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scaletrain.data.manifest import SPLITS, filesystem
from scaletrain.data.schema import Schema, find_target, infer_schema
from scaletrain.data.shard_writer import (
    SPLIT_CODES,
    FileResult,
    ShardWriter,
    finish,
    new_shard_directory,
    split_codes,
    split_rule,
)
from scaletrain.data.stats import TableStats, TargetStats
from scaletrain.data.values import MISSING, TRUE_WORDS, bool_numbers, category_strings
from scaletrain.errors import DataError
from scaletrain.modalities.table.arrow_read import SlowPath, read_arrow_chunks, read_types
from scaletrain.modalities.table.chunks import CHUNK_ROWS, read_chunks
from scaletrain.modalities.table.media import cell_bytes
from scaletrain.modalities.table.preprocess import table_spec
from scaletrain.modalities.table.tables import expand_sources
from scaletrain.parallel.cluster import map_on_ray
from scaletrain.runtime import cores
from scaletrain.tasks import task_of

SAMPLE_ROWS = 100_000      # rows of the first file that roles are inferred from
MEDIA_CHUNK_ROWS = 2048    # rows per chunk (and row group) with image columns: ~100 MB of pixels a streamed window
TEXT_CHUNK_ROWS = 8192     # ... with text columns: ≤ 4 × 8,192 rows of ≤ 512 token ids a streamed window


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
                "boolean": s.boolean, "datetime": s.datetime, "text": s.text, "image": s.image, "sound": s.sound,
                "dropped": s.dropped}


def target_type(sample: pd.Series, task: str) -> pa.DataType:
    if not task_of(task).classifies or sample.dtype.kind == "f":
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
              + [pa.field(c, pa.string()) for c in schema.text]  # as written: training tokenizes a window at a time
              + [pa.field(c, pa.binary()) for c in schema.image + schema.sound]  # each cell the file's bytes
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
        out[name] = bool_numbers(chunk[name])
    for name in s.datetime:
        out[name] = pd.to_datetime(chunk[name], errors="coerce", format="mixed")
    for name in s.categorical:
        out[name] = category_strings(chunk[name]).replace(MISSING, None)
    for name in s.text:
        out[name] = chunk[name].map(lambda value: value if isinstance(value, str) else
                                    None if pd.isna(value) else str(value)).astype(object)
    if s.image or s.sound:
        fs, path = filesystem(url)
        folder = posixpath.dirname(path)
        for name in s.image + s.sound:
            sound = name in s.sound
            out[name] = chunk[name].map(lambda value, sound=sound: cell_bytes(value, fs, folder, sound)).astype(object)
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
                for name in s.categorical + s.text]
    columns.append(table[s.target])
    # one chunk per column: the reader's blocks do not line up with chunks, and three filters
    # plus a write of unchunked columns cost less than of chunked ones (0.20 s -> 0.16 s a file)
    return pa.Table.from_arrays(columns, schema=layout.arrow_schema).combine_chunks()


def _bool_arrow(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """1.0 for true-like values, 0.0 for others, missing kept: as `bool_numbers` does."""
    if pa.types.is_boolean(column.type):
        return pc.cast(column, pa.float64())
    if pa.types.is_floating(column.type):
        return pc.cast(pc.equal(column, 1.0), pa.float64())
    words = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    truth = pc.cast(pc.is_in(words, value_set=pa.array(sorted(TRUE_WORDS))), pa.float64())
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
    stats = TableStats(layout.spec, layout.schema.categorical, media=layout.schema.image + layout.schema.sound)
    target = TargetStats(layout.schema.task)
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
def prepare_table_shards(sources: list[str], out: str, target: str | None = None, task: str = "auto",
                         roles: dict | None = None, shard_size: int = 256 << 20, val_fraction: float = 0.15,
                         test_fraction: float = 0.15, seed: int = 0, workers: int | None = None,
                         chunk_rows: int = CHUNK_ROWS, verbose: bool = True, backend: str = "local") -> dict:
    """Prepare shards and the manifest from table files, folders and globs; return the manifest.
    With backend "ray" the files are spread over a running Ray cluster's workers (each writes
    its shards and returns its partial statistics, merged here as a local run merges them)."""
    files = expand_sources(sources)
    with new_shard_directory(out) as (fs, root):
        return _prepare(files, sources, out, fs, root, target, task, roles, shard_size, val_fraction,
                        test_fraction, seed, workers, chunk_rows, verbose, backend)


def _first_rows(url: str, chunk_rows: int) -> pd.DataFrame:
    """The first SAMPLE_ROWS rows of a file, that the roles are inferred from."""
    sample_chunks, rows = [], 0
    for chunk in read_chunks(url, chunk_rows):
        sample_chunks.append(chunk)
        rows += len(chunk)
        if rows >= SAMPLE_ROWS:
            break
    if not sample_chunks or rows == 0:
        raise DataError(f"'{url}' holds no data rows")
    return pd.concat(sample_chunks, ignore_index=True)


def _prepare(files, sources, out, fs, root, target, task, roles, shard_size, val_fraction, test_fraction, seed,
             workers, chunk_rows, verbose, backend) -> dict:
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    layout = make_layout(_first_rows(files[0], chunk_rows), target, task, roles or {}, files[0], val_fraction,
                         test_fraction, seed)
    # a row group is what training decodes or tokenizes at once: with images, sounds or text, not 65,536 rows
    media = layout.schema.image + layout.schema.sound
    chunk_rows = min(chunk_rows, MEDIA_CHUNK_ROWS if media else TEXT_CHUNK_ROWS if layout.schema.text else chunk_rows)
    local = fs.protocol in ("file", "local") or "file" in fs.protocol
    workers = workers or min(len(files), cores())
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
        if backend == "ray":
            def done(_: int, job_result: tuple) -> None:
                advance(sum(job_result[3].values()), 1)
            results = [_from_job(*r) for r in map_on_ray(_prepare_job, jobs, done)]
        elif workers > 1 and local:
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


