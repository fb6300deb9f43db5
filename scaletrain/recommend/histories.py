"""The users' histories in a run directory: `history.safetensors`, CSR rows (an int64 `indptr`
of users + 1 offsets, int32 `items`), opened memory-mapped.

A standard safetensors file, but written here a block of rows at a time at their offsets:
safetensors' own writer needs every tensor in memory at once, and a streamed log's histories
(4 bytes an interaction: 80 MB at 20 M) are what must not be. Reading maps the file instead
of loading it, so a process touches only the rows it asks for.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterable

import numpy as np

from scaletrain.errors import RunDirError

FILE = "history.safetensors"
INDPTR, ITEMS = "history.indptr", "history.items"


def header_of(n_users: int, n_rows: int) -> bytes:
    """The 8-byte length and the JSON header, padded with spaces to 8 bytes as the format allows."""
    ends = 8 * (n_users + 1)
    header = json.dumps({INDPTR: {"dtype": "I64", "shape": [n_users + 1], "data_offsets": [0, ends]},
                         ITEMS: {"dtype": "I32", "shape": [n_rows], "data_offsets": [ends, ends + 4 * n_rows]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def write_histories(path: Path, indptr: np.ndarray, blocks: Iterable[tuple[int, np.ndarray]]) -> None:
    """Write `path` (under a temporary name, then moved): `indptr`, and the items of each
    block (its first row's index into the items, its items) where they belong."""
    n_rows = int(indptr[-1])
    head = header_of(len(indptr) - 1, n_rows)
    start = len(head) + 8 * len(indptr)
    partial = path.with_name(path.name + ".partial")
    written = 0
    with open(partial, "wb") as fh:
        fh.write(head)
        fh.write(np.ascontiguousarray(indptr, dtype="<i8").tobytes())
        fh.truncate(start + 4 * n_rows)
        for first, items in blocks:
            fh.seek(start + 4 * first)
            fh.write(np.ascontiguousarray(items, dtype="<i4").tobytes())
            written += len(items)
    if written != n_rows:
        partial.unlink()
        raise RuntimeError(f"histories: {written:,} of {n_rows:,} items written")  # a bug, not bad input
    partial.replace(path)


def save_histories(path: Path, indptr: np.ndarray, indices: np.ndarray) -> None:
    write_histories(path, indptr, [(0, indices)])


def open_histories(path: Path, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, items) of `path`, memory-mapped, after checking the header against the run's
    users and items and the rows' shape (offsets from 0 up to the items' count, in order).
    The items are checked inside the catalogue a block at a time, never all in memory."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "numpy") as found:  # the format itself, checked by safetensors
            names = set(found.keys())
        with open(path, "rb") as fh:
            size = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(size))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise RunDirError(f"{path}: not a readable safetensors file ({str(exc)[:120]}); the run directory is damaged") from None
    if names != {INDPTR, ITEMS} or header[INDPTR]["shape"] != [n_users + 1] or header[INDPTR]["dtype"] != "I64" \
            or header[ITEMS]["dtype"] != "I32":
        raise RunDirError(f"{path}: expected {INDPTR} (I64, {n_users + 1:,} offsets for {n_users:,} users) and "
                          f"{ITEMS} (I32); the run directory is damaged")
    start = 8 + size
    indptr = np.memmap(path, "<i8", "r", start + header[INDPTR]["data_offsets"][0], (n_users + 1,))
    n_rows, first = header[ITEMS]["shape"][0], start + header[ITEMS]["data_offsets"][0]
    items = np.memmap(path, "<i4", "r", first, (n_rows,)) if n_rows else np.zeros(0, np.int32)
    if indptr[0] != 0 or indptr[-1] != n_rows or np.any(np.diff(indptr) < 0) or not all(
            0 <= block.min() and block.max() < n_items for block in blocks_of(path, first, n_rows)):
        raise RunDirError(f"{path}: the users' histories are not rows of item indices inside the catalogue of "
                          f"{n_items:,}; the run directory is damaged")
    return indptr, items


def blocks_of(path: Path, first: int, n_rows: int, size: int = 1 << 24) -> Iterable[np.ndarray]:
    """The items a block at a time, read (not mapped: scanning a mapping would keep every page
    of it in this process's resident memory)."""
    for offset in range(0, n_rows, size):
        yield np.fromfile(path, "<i4", min(size, n_rows - offset), offset=first + 4 * offset)
