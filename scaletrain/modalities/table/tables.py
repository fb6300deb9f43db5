"""Read tables (CSV/TSV/Parquet/JSONL, compressed, globbed) into one pandas DataFrame."""
from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scaletrain.data.manifest import filesystem
from scaletrain.data.pixels import MAGIC
from scaletrain.errors import DataError, path_not_found

TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson", ".json"}
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # latin-1 decodes any byte, so it ends the list


def split_suffix(path: Path) -> tuple[str, str | None]:
    """Return (format suffix, compression) of a file name such as data.csv.gz."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), compression


def is_table_file(path: Path) -> bool:
    return path.is_file() and split_suffix(path)[0] in TABLE_SUFFIXES


def expand_sources(sources: list[str]) -> list[str]:
    """Return every table file behind paths, folders and globs (local or fsspec URLs), sorted."""
    files: list[str] = []
    for source in sources:
        fs, path = filesystem(source)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        prefix = "" if protocol in ("file", "local") else f"{protocol}://"
        if any(ch in path for ch in "*?["):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            if not found:
                raise DataError(f"the pattern '{source}' matches no files; check the path and quoting")
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if split_suffix_of(p) in TABLE_SUFFIXES)
        elif fs.exists(path):
            found = [path]
        else:
            raise path_not_found(source)
        if not found:
            raise DataError(f"the folder '{source}' holds no table files (.csv, .tsv, .parquet, .jsonl)")
        files += [prefix + p if prefix and not p.startswith(prefix) else p for p in found]
    return files



def split_suffix_of(path: str) -> str:
    from pathlib import PurePosixPath

    return split_suffix(PurePosixPath(path))[0]


def expand_paths(source: str | Path) -> list[Path]:
    """Return the local table files a path, directory or glob names, sorted, or raise DataError."""
    return [Path(p) for p in expand_sources([str(source)])]


def _open_bytes(path: Path, compression: str | None, limit: int | None = None) -> bytes:
    """Return the (decompressed) bytes of a file, at most `limit` of them."""
    try:
        if compression == "gzip":
            with gzip.open(path, "rb") as fh:
                return fh.read(limit if limit else -1)
        if compression == "zstd":
            import zstandard

            with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as fh:
                return fh.read(limit if limit else -1)
        if compression in ("bz2", "xz"):
            import bz2
            import lzma

            opener = bz2.open if compression == "bz2" else lzma.open
            with opener(path, "rb") as fh:
                return fh.read(limit if limit else -1)
        with open(path, "rb") as fh:
            return fh.read(limit if limit else -1)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read '{path}': {exc}") from None
    except Exception as exc:  # zstandard raises its own ZstdError on corrupt frames
        raise DataError(f"cannot decompress '{path}' as {compression}: {exc}") from None


def decode_text(data: bytes, path: Path) -> tuple[str, str]:
    """The text of a file's bytes and its encoding: UTF-16 by its byte-order mark (spreadsheets
    save "Unicode text" so), else UTF-8, Windows-1252 or Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data[:len(data) - len(data) % 2].decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise DataError(f"'{path}' starts like UTF-16 text but does not decode as it; save it as UTF-8") from None
    if b"\x00" in data[:4096]:
        raise DataError(f"'{path}' looks binary, not text; give a CSV, TSV, JSONL or Parquet file")
    for encoding in _ENCODINGS:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")


def sniff_csv(sample: str, suffix: str) -> tuple[str, bool]:
    """Return (delimiter, has_header) guessed from the first lines of a delimited file."""
    lines = [ln for ln in sample.splitlines()[:50] if ln.strip()]
    if suffix == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    rows = list(csv.reader(lines[:20], delimiter=delimiter))
    if len(rows) < 2:
        return delimiter, True

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    # A header row has no numbers where the body has them (csv.Sniffer.has_header is
    # fooled by all-text tables, so we only call a first row "data" on positive evidence).
    first, body = rows[0], rows[1:]
    body_numeric = [all(numeric(r[i]) for r in body if i < len(r) and r[i] != "") for i in range(len(first))]
    first_numeric = [numeric(c) for c in first]
    has_header = not any(fn and bn for fn, bn in zip(first_numeric, body_numeric)) or not any(body_numeric)
    return delimiter, has_header


def read_delimited(path: Path, suffix: str, compression: str | None) -> pd.DataFrame:
    raw = _open_bytes(path, compression)
    if not raw.strip():
        raise DataError(f"'{path}' is empty; give a file with a header row and data rows")
    text, _ = decode_text(raw, path)
    delimiter, has_header = sniff_csv(text[:65536], suffix)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, header=0 if has_header else None,
                            skipinitialspace=True, low_memory=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot parse '{path}' as delimited text: {str(exc).splitlines()[0]}; fix or remove "
                        "that line (quote fields that hold the delimiter)") from None
    if not has_header:
        frame.columns = [f"col{i}" for i in range(frame.shape[1])]
    else:
        check_header(text, delimiter, path)
    return frame


def check_header(text: str, delimiter: str, path) -> None:
    """Refuse a header that repeats a name (pandas would silently rename the second to "a.1")."""
    try:
        header = next(csv.reader(text.lstrip("\ufeff").splitlines()[:1], delimiter=delimiter,
                                 skipinitialspace=True), [])
    except csv.Error:  # a header the csv module cannot split was parsed by pandas already
        return
    refuse_duplicate_columns(pd.DataFrame(columns=[h for h in header if h]), path)


def read_one(path: Path) -> pd.DataFrame:
    """Return one table file as a DataFrame, or raise DataError naming it."""
    suffix, compression = split_suffix(path)
    if suffix in (".parquet", ".pq"):
        try:
            table = pq.ParquetFile(path).read()
            table.validate(full=True)  # damaged string data would otherwise surface later
            frame = table.to_pandas()
        except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"cannot read '{path}' as Parquet: {exc}") from None
        return flatten_nested(refuse_duplicate_columns(frame, path))
    if suffix in (".jsonl", ".ndjson", ".json"):
        raw = _open_bytes(path, compression)
        if not raw.strip():
            raise DataError(f"'{path}' is empty; give one JSON object per line")
        text, _ = decode_text(raw, path)
        return read_json_text(text, path, lines=suffix != ".json")
    return read_delimited(path, suffix, compression)


def refuse_duplicate_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    names = pd.Index([str(c) for c in frame.columns])
    if names.duplicated().any():
        raise DataError(f"'{path}' has the column name '{names[names.duplicated()][0]}' twice; "
                        "give every column its own name")
    return frame


def read_json_text(text: str, path: Path, lines: bool) -> pd.DataFrame:
    """Return a DataFrame from JSON lines (or one JSON array of objects / object of columns).

    Parsed line by line with the standard library rather than pandas.read_json, so that a bad
    line is reported by number and a stray array or scalar line is refused, not mis-read.
    Nested values (objects, arrays) become their JSON text: one cell, one value.
    """
    records = None
    if not lines:  # a .json file: a whole document, or JSON lines under that name
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = None
        if isinstance(document, dict) and document and all(isinstance(v, list) for v in document.values()):
            lengths = {len(v) for v in document.values()}
            if len(lengths) > 1:
                raise DataError(f"'{path}' holds columns of different lengths {sorted(lengths)}; give equal-length columns")
            records = [dict(zip(document, row)) for row in zip(*document.values())]
        elif isinstance(document, list):
            records = document
        elif document is not None:
            raise DataError(f"'{path}' holds one JSON {type(document).__name__}; give an array of objects or JSON lines")
    if records is None:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"'{path}' line {number} is not valid JSON ({exc.msg}); "
                                    "give one JSON object per line") from None
                except RecursionError:
                    raise DataError(f"'{path}' line {number} is nested too deeply to read") from None
                if not isinstance(records[-1], dict):
                    raise DataError(f"'{path}' line {number} holds a JSON {type(records[-1]).__name__}, not an object; "
                                    "give one JSON object per line")
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"'{path}' item {number} is a JSON {type(record).__name__}, not an object")
    return flatten_nested(pd.DataFrame.from_records(records))


def flatten_nested(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the frame with nested cells (lists, arrays, objects) as JSON text, bytes as text.

    A nested cell is one opaque value to scaletrain (a category, or free text dropped by
    schema inference); as text it can be counted and compared, which a list cannot.
    """
    for column in frame.columns[(frame.dtypes == object).to_numpy()]:  # noqa: E721 - a dtype mask, not a type test
        frame[column] = frame[column].map(_flat_value)
    return frame


def _flat_value(value):
    if isinstance(value, bytes):  # a binary column: an image's bytes kept, else text that stays distinct
        return value if value.startswith(MAGIC) else value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return float(value)  # beyond int64: keep the magnitude rather than fail on conversion
    return value


def read_table(source: str | Path) -> pd.DataFrame:
    """Return every table file behind a path, folder or glob as one DataFrame."""
    paths = expand_paths(source)
    frames = [read_one(p) for p in paths]
    if len(frames) > 1:
        columns = list(frames[0].columns)
        for path, frame in zip(paths[1:], frames[1:]):
            if set(frame.columns) != set(columns):
                missing = sorted(set(columns) ^ set(frame.columns))
                raise DataError(f"'{path}' has other columns than '{paths[0]}' (differ: {missing[:5]}); "
                                "give files with one schema")
        frames = pd.concat(frames, ignore_index=True)
    else:
        frames = frames[0]
    if len(frames) == 0:
        raise DataError(f"'{source}' holds a header but no data rows")
    return frames


def frame_from_arrays(x: np.ndarray | pd.DataFrame, y=None, target: str = "target") -> pd.DataFrame:
    """Return a DataFrame from an (n, d) array or a DataFrame, with y added as `target`."""
    if isinstance(x, pd.DataFrame):
        frame = x.copy()
    else:
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise DataError(f"a table array must be 2-D (rows, columns); got shape {x.shape}")
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(frame):
            raise DataError(f"X has {len(frame)} rows but y has {len(y)}; give one label per row")
        frame[target] = y
    return frame


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as CSV, Parquet or JSONL (by suffix), atomically."""
    from scaletrain.io import atomic_write_bytes

    path = Path(path)
    suffix = split_suffix(path)[0]
    if suffix in (".parquet", ".pq"):
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix in (".jsonl", ".ndjson", ".json"):
        atomic_write_bytes(path, frame.to_json(orient="records", lines=True).encode("utf-8"))
    else:
        atomic_write_bytes(path, frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",").encode("utf-8"))
