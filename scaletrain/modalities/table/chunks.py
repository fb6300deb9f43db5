"""Read table files of any size in chunks: local paths or fsspec URLs, globs expanded by
scaletrain, CSV/TSV (sniffed as in memory), Parquet row batches and JSON lines, compressed or
not. Every failure to read becomes a DataError naming the file."""
from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scaletrain.data.manifest import filesystem
from scaletrain.errors import DataError
from scaletrain.modalities.table.tables import (
    check_header,
    decode_text,
    flatten_nested,
    read_json_text,
    refuse_duplicate_columns,
    sniff_csv,
    split_suffix,
)

CHUNK_ROWS = 65_536        # rows per read chunk = rows per Parquet row group = one streaming unit




def _read_errors() -> tuple[type[BaseException], ...]:
    """Every exception type that means "this file is damaged or not what its name says"."""
    import csv
    import lzma
    import zlib

    import zstandard

    return (pa.ArrowException, OSError, EOFError, ValueError, UnicodeDecodeError, pd.errors.ParserError,
            zlib.error, lzma.LZMAError, zstandard.ZstdError, csv.Error)


READ_ERRORS = _read_errors()


def read_chunks(url: str, rows: int = CHUNK_ROWS):
    """Yield a file's rows as DataFrames of at most `rows` rows (CSV/TSV, Parquet, JSONL)."""
    from pathlib import PurePosixPath

    fs, path = filesystem(url)
    suffix, compression = split_suffix(PurePosixPath(path))
    try:
        if suffix in (".parquet", ".pq"):
            with fs.open(path, "rb") as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=rows):
                    yield flatten_nested(refuse_duplicate_columns(batch.to_pandas(), url))
            return
        if suffix in (".jsonl", ".ndjson", ".json"):
            with fs.open(path, "rb", compression=compression) as fh:
                yield from _json_chunks(fh, url, rows)
            return
        with fs.open(path, "rb", compression=compression) as fh:  # opened twice: zstd streams cannot seek back
            text, encoding = decode_text(fh.read(1 << 16), url)
        delimiter, has_header = sniff_csv(text, suffix)
        if has_header:
            check_header(text, delimiter, url)
        with fs.open(path, "rb", compression=compression) as fh:
            reader = pd.read_csv(fh, sep=delimiter, header=0 if has_header else None, encoding=encoding,
                                 skipinitialspace=True, chunksize=rows, low_memory=False)
            for chunk in reader:
                if not has_header:
                    chunk.columns = [f"col{i}" for i in range(chunk.shape[1])]
                yield chunk
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"cannot read '{url}': {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _json_chunks(fh, url: str, rows: int):
    lines, first = [], 1
    wrapper = io.TextIOWrapper(fh, encoding="utf-8", errors="strict")
    for number, line in enumerate(wrapper, 1):
        lines.append(line)
        if len(lines) == rows:
            yield _json_frame(lines, url, first)
            lines, first = [], number + 1
    if lines:
        yield _json_frame(lines, url, first)


def _json_frame(lines: list[str], url: str, first: int) -> pd.DataFrame:
    try:
        return read_json_text("".join(lines), url, lines=True)
    except DataError as exc:  # renumber "line N" of the chunk to the file's line
        import re

        raise DataError(re.sub(r"line (\d+)", lambda m: f"line {int(m.group(1)) + first - 1}", str(exc))) from None
