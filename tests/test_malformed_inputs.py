"""Property tests: malformed files of every kind the readers take either load and prepare, or
raise a ScaletrainError; never another exception.

Each reader gets a quick deterministic run in `make test` and a long random one (≥ 1,000
examples, marked slow) in `make bench`.
"""
from __future__ import annotations

import gzip
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from scaletrain.config import SECTIONS, Config, make_config
from scaletrain.errors import ScaletrainError
from scaletrain.modalities import load_source, prepare

QUICK, LONG = 40, 1000
HUGE_FIELD = "x" * 300_000
NAMES = st.sampled_from(["a", "b", "y", "target", "a", "", " ", "é", "1", "col0"]) | st.text(max_size=6)


def loads_or_refuses(path: Path) -> None:
    """Load and prepare `path` as training data; only a ScaletrainError may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            source = load_source(path)
            prepare(source, None, Config().data, seed=0)
        except ScaletrainError:
            pass


def mangled(data: bytes, draw) -> bytes:
    """Return the bytes whole, truncated, with a stretch overwritten, or with bytes inserted."""
    how = draw(st.sampled_from(["whole", "whole", "truncate", "overwrite", "insert"]))
    if how == "whole" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        return data[:at]
    junk = draw(st.binary(min_size=1, max_size=16))
    return data[:at] + junk + data[at + (len(junk) if how == "overwrite" else 0):]


# ------------------------------------------------------------------ delimited text
CELLS = st.one_of(
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=10),
    st.sampled_from(["", "NA", "null", "inf", "-inf", "nan", "1e400", '"', '"open', "a,b", "x\ny", "true",
                     "False", "2024-02-30", "2024-01-01T10:00:00", "\ufeff", "0x1F", "1_000", "0"]),
)


@st.composite
def delimited_files(draw):
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    width = draw(st.integers(1, 5))
    header = draw(st.lists(NAMES, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(CELLS, max_size=width + 2), max_size=30))  # ragged on purpose
    if draw(st.integers(0, 9)) == 0:
        rows.insert(0, [HUGE_FIELD] * width)
    text = "\n".join(delimiter.join(row) for row in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        data = draw(st.binary(max_size=400))
    name = draw(st.sampled_from(["t.csv", "t.tsv", "t.txt", "t.csv.gz"]))
    if name.endswith(".gz"):
        data = gzip.compress(data)
    return name, mangled(data, draw)


# ------------------------------------------------------------------ JSON lines
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@st.composite
def jsonl_files(draw):
    keys = draw(st.lists(NAMES, min_size=1, max_size=4))
    lines = []
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["object", "object", "object", "value", "garbage"]))
        if kind == "object":
            record = {k: draw(JSON_VALUES) for k in keys if draw(st.integers(0, 5))}
            lines.append(json.dumps(record))
        elif kind == "value":
            lines.append(json.dumps(draw(JSON_VALUES)))
        else:
            lines.append(draw(st.text(max_size=20)))
    data = "\n".join(lines).encode("utf-8", errors="replace")
    return draw(st.sampled_from(["t.jsonl", "t.ndjson", "t.json"])), mangled(data, draw)


# ------------------------------------------------------------------ Parquet
def _column(draw, n: int) -> pa.Array:
    kind = draw(st.sampled_from(["int", "float", "str", "bool", "time", "list", "binary", "null", "dict"]))
    if kind == "int":
        return pa.array(draw(st.lists(st.none() | st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n)), pa.int64())
    if kind == "float":
        return pa.array(draw(st.lists(st.none() | st.floats(), min_size=n, max_size=n)), pa.float64())
    if kind == "str":
        return pa.array(draw(st.lists(st.none() | st.text(max_size=6), min_size=n, max_size=n)), pa.string())
    if kind == "bool":
        return pa.array(draw(st.lists(st.none() | st.booleans(), min_size=n, max_size=n)), pa.bool_())
    if kind == "time":
        return pa.array(draw(st.lists(st.none() | st.integers(-10**17, 10**17), min_size=n, max_size=n)),
                        pa.timestamp("us"))
    if kind == "list":
        return pa.array(draw(st.lists(st.none() | st.lists(st.integers(-9, 9), max_size=3), min_size=n, max_size=n)))
    if kind == "binary":
        return pa.array(draw(st.lists(st.binary(max_size=5), min_size=n, max_size=n)), pa.binary())
    if kind == "dict":
        return pa.array(draw(st.lists(st.sampled_from(["p", "q", "r"]), min_size=n, max_size=n))).dictionary_encode()
    return pa.nulls(n)


@st.composite
def parquet_files(draw):
    n = draw(st.integers(0, 25))
    width = draw(st.integers(1, 4))
    names = draw(st.lists(NAMES, min_size=width, max_size=width))  # duplicates allowed on purpose
    table = pa.Table.from_arrays([_column(draw, n) for _ in range(width)], names=names)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return draw(st.sampled_from(["t.parquet", "t.pq"])), mangled(buffer.getvalue(), draw)


# ------------------------------------------------------------------ image folders
def _image_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["good", "good", "good", "mangled", "garbage", "empty", "text"]))
    if kind == "garbage":
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return b""
    if kind == "text":
        return b"this is not an image\n"
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "LA"]))
    fmt = draw(st.sampled_from(["PNG", "BMP", "GIF", "TIFF", "JPEG", "WEBP"]))
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        mode = "RGB"
    if fmt in ("BMP", "GIF", "WEBP") and mode in ("I;16", "LA"):
        mode = "L"
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    pixels = np.frombuffer(draw(st.binary(min_size=height * width * 4, max_size=height * width * 4)), np.uint8)
    image = Image.fromarray(pixels[: height * width * 3].reshape(height, width, 3), "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    data = buffer.getvalue()
    return mangled(data, draw) if kind == "mangled" else data


@st.composite
def image_folders(draw):
    files = {}
    for label in draw(st.lists(st.sampled_from(["cat", "dog", "bird", "1"]), min_size=1, max_size=3, unique=True)):
        for i in range(draw(st.integers(0, 4))):
            suffix = draw(st.sampled_from([".png", ".jpg", ".bmp", ".gif", ".tif", ".webp"]))
            files[f"{label}/{i}{suffix}"] = _image_bytes(draw)
    return files


# ------------------------------------------------------------------ IDX and .npz arrays
@st.composite
def idx_folders(draw):
    def idx(ndim_max: int) -> bytes:
        magic = draw(st.sampled_from([b"\0\0\x08", b"\0\0\x08", b"\0\0\x0d", b"\x1f\x8b\x08"]))
        dims = draw(st.lists(st.integers(0, 40) | st.integers(0, 2**32 - 1), max_size=ndim_max))
        header = magic + bytes([len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        size = int(np.prod(dims)) if dims and np.prod(dims, dtype=float) < 5000 else draw(st.integers(0, 100))
        body = draw(st.binary(min_size=size, max_size=size)) if draw(st.booleans()) else bytes(size)
        return mangled(header + body, draw)

    return {"train-images-idx3-ubyte": idx(4), "train-labels-idx1-ubyte": idx(2)}


NPZ_DTYPES = st.sampled_from(["uint8", "float32", "float64", "int64", "bool", "complex64", "<U3", "int8", "float16"])


@st.composite
def npz_files(draw):
    arrays = {}
    for key in draw(st.lists(st.sampled_from(["x", "y", "images", "labels", "other"]), min_size=1, max_size=3, unique=True)):
        shape = tuple(draw(st.lists(st.integers(0, 6), max_size=5)))
        dtype = draw(NPZ_DTYPES)
        values = np.asarray(draw(st.lists(st.floats(width=32) | st.integers(-300, 300),
                                          min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))), dtype=float)
        with np.errstate(all="ignore"):
            arrays[key] = (values.astype(dtype) if dtype != "<U3" else values.astype(str)).reshape(shape)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return "d.npz", mangled(buffer.getvalue(), draw)


# ------------------------------------------------------------------ configs
CONFIG_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["auto", "mlp", "adamw", "10m", "[1, 2]", "0.5", "inf"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2),
    max_leaves=4)
CONFIG_KEYS = st.sampled_from([f"{s}.{k}" for s, cls in SECTIONS.items() for k in cls.model_fields]) | st.text(max_size=10)


@st.composite
def config_files(draw):
    tree: dict = {}
    for key in draw(st.lists(CONFIG_KEYS, max_size=6)):
        section, _, name = key.partition(".")
        value = draw(CONFIG_VALUES)
        if name:
            slot = tree.setdefault(section, {})
            if isinstance(slot, dict):
                slot[name] = value
        else:
            tree[section] = value
    text = yaml.safe_dump(tree, allow_unicode=True) if draw(st.integers(0, 4)) else draw(st.text(max_size=60))
    sets = draw(st.lists(st.builds(lambda k, v: f"{k}={v}", CONFIG_KEYS, st.text(max_size=8)), max_size=2))
    return mangled(text.encode("utf-8"), draw), sets


def config_loads_or_refuses(case, folder: Path) -> None:
    data, sets = case
    (folder / "c.yaml").write_bytes(data)
    try:
        make_config(folder / "c.yaml", sets)
    except ScaletrainError:
        pass


# ------------------------------------------------------------------ the tests
def write_files(files: dict[str, bytes], folder: Path) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def one_file(case, folder: Path) -> None:
    name, data = case
    loads_or_refuses(write_files({name: data}, folder) / name)


def prepared_into_shards(case, folder: Path) -> None:
    """The streaming path: prepare the file into shards, then prepare those for training."""
    from scaletrain.modalities import prepare_shards

    name, data = case
    path = write_files({name: data}, folder) / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            prepare_shards([str(path)], str(folder / "shards"), workers=1, chunk_rows=7, verbose=False)
            prepare(load_source(str(folder / "shards")), None, Config().data, seed=0)
        except ScaletrainError:
            pass


def one_folder(files, folder: Path) -> None:
    root = folder / "data"
    root.mkdir()
    loads_or_refuses(write_files(files, root))


READERS = {
    "csv": (delimited_files(), one_file),
    "jsonl": (jsonl_files(), one_file),
    "parquet": (parquet_files(), one_file),
    "images": (image_folders(), one_folder),
    "idx": (idx_folders(), one_folder),
    "npz": (npz_files(), one_file),
    "config": (config_files(), config_loads_or_refuses),
    "shards": (st.one_of(delimited_files(), jsonl_files(), parquet_files()), prepared_into_shards),
}


@pytest.mark.parametrize("examples", [pytest.param(QUICK, id="quick"),
                                      pytest.param(LONG, id="long", marks=pytest.mark.slow)])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_malformed_input_loads_or_raises_a_typed_error(reader, examples):
    strategy, check = READERS[reader]

    # the quick run is derandomized so that CI is deterministic; the long run explores
    @settings(max_examples=examples, deadline=None, database=None, derandomize=examples == QUICK,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        with tempfile.TemporaryDirectory() as tmp:
            check(case, Path(tmp))

    run()
