"""A corpus cut into pieces, each tokenized and packed into shards of `.npy` blocks: in this
process for a small corpus, else by a pool of processes (or Ray tasks), one piece a task.

Nothing here imports torch: a spawned worker imports this module (about 0.5 s), not the
trainer's stack (2.3 s with torch).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from scaletrain.data.corpus import OPENERS, Corpus
from scaletrain.data.text import tokenizer_from_json
from scaletrain.pretraining.packing import iter_blocks

PIECE_BYTES = 64 << 20  # plain files are cut into pieces of about this size, one task each
IN_PROCESS_BYTES = 16 << 20  # a corpus this small is tokenized here: starting a worker costs more than its share
COMPRESSION = 4  # a compressed file counts as this many times its bytes (text compresses 3-5x)
SHARD_BLOCKS = 8192
ENCODE_CHUNK = 2048


def pieces_of(files: list[Path]) -> list[tuple[str, int, int]]:
    """(file, start byte, end byte) tasks: compressed files whole, plain ones in PIECE_BYTES ranges."""
    tasks = []
    for f in files:
        size = f.stat().st_size
        if f.suffix.lower() in OPENERS or size <= PIECE_BYTES:
            tasks.append((str(f), 0, -1))
        else:
            tasks += [(str(f), start, min(start + PIECE_BYTES, size)) for start in range(0, size, PIECE_BYTES)]
    return tasks


def tokenize_piece(task: tuple) -> dict:
    """One worker's task: tokenize a piece, pack it, write its shards; return their counts."""
    index, (file, start, end), tokenizer_json, block_size, document, field, out = task
    tokenizer = tokenizer_from_json(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    corpus = Corpus([Path(file)], document, field, span=None if end < 0 else (start, end))
    documents = [0]

    def encoded():
        chunk = []
        for doc in corpus:
            chunk.append(doc)
            if len(chunk) == ENCODE_CHUNK:
                documents[0] += len(chunk)
                yield from (e.ids for e in tokenizer.encode_batch(chunk, add_special_tokens=False))
                chunk = []
        documents[0] += len(chunk)
        yield from (e.ids for e in tokenizer.encode_batch(chunk, add_special_tokens=False))

    shards = []
    for k, blocks in enumerate(iter_blocks(encoded(), block_size, SHARD_BLOCKS)):
        name = f"blocks-{index:05d}-{k:04d}.npy"
        np.save(Path(out) / name, blocks, allow_pickle=False)
        shards.append({"file": name, "blocks": int(len(blocks)), "tokens": int((blocks > 0).sum())})
    return {"shards": shards, "documents": documents[0], "skipped": dict(corpus.skipped)}


def tokenize_pieces(jobs: list[tuple], workers: int | None, verbose: bool, backend: str) -> list[dict]:
    """Every job through tokenize_piece: as Ray tasks (backend "ray"), here (one piece, or a
    corpus under IN_PROCESS_BYTES), else in up to `workers` spawned processes."""
    if backend == "ray":
        from scaletrain.parallel.cluster import map_on_ray

        return map_on_ray(tokenize_piece, jobs)
    size = sum(_text_bytes(file, start, end) for _, (file, start, end), *_ in jobs)
    if len(jobs) == 1 or size < IN_PROCESS_BYTES:
        return [tokenize_piece(job) for job in jobs]
    from rich.progress import track

    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:  # no fork of a threaded parent
        return list(track(pool.map(tokenize_piece, jobs), total=len(jobs), description="tokenizing",
                          disable=not verbose, transient=True))


def _text_bytes(file: str, start: int, end: int) -> int:
    """About how much text a piece holds: its byte range, or its file's size (compressed: times COMPRESSION)."""
    if end >= 0:
        return end - start
    return Path(file).stat().st_size * (COMPRESSION if Path(file).suffix.lower() in OPENERS else 1)
