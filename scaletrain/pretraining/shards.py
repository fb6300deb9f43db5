"""A corpus tokenized once into shards of packed blocks, in parallel processes, and streamed
back with flat memory: how `pretrain` reads a corpus larger than memory.

`prepare_corpus` trains the tokenizer on the corpus's first 50 MB, cuts the files into pieces
(large plain files by byte ranges at line boundaries), and a pool of processes (pieces.py;
a small corpus: this one) tokenizes and packs each piece into `.npy` files of uint16 ids (no
pickle; segments are recomputed from the [SEP]s). `corpus.json` lists the shards, block and document counts and what was skipped.
`ShardedBlocks` serves masked batches from memory-mapped shards, one or two open at a time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from scaletrain.data.corpus import corpus_files
from scaletrain.data.text import tokenizer_from_json
from scaletrain.errors import DataError
from scaletrain.io import write_json, write_text
from scaletrain.pretraining.blocks import mask_tokens, segments_of
from scaletrain.pretraining.pieces import pieces_of, tokenize_pieces

MANIFEST = "corpus.json"


def is_corpus_shards(path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder) -> dict:
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"'{folder}' has no readable {MANIFEST} ({exc}); prepare it again") from None


def prepare_corpus(sources: list, out: str | Path, tokenizer_json: str, block_size: int, document: str = "line",
                   field: str = "text", workers: int | None = None, verbose: bool = False,
                   backend: str = "local") -> dict:
    """Tokenize and pack the corpus into `out` with `workers` processes (a small corpus: in
    this one), or as tasks on a running Ray cluster (backend "ray"); return the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "tokenizer.json", tokenizer_json)
    tasks = pieces_of(corpus_files(sources))
    jobs = [(i, t, tokenizer_json, block_size, document, field, str(out)) for i, t in enumerate(tasks)]
    results = tokenize_pieces(jobs, workers, verbose, backend)
    shards = [s for r in results for s in r["shards"]]
    skipped: dict[str, int] = {}
    for r in results:
        for what, count in r["skipped"].items():
            skipped[what] = skipped.get(what, 0) + count
    manifest = {"kind": "corpus", "block_size": block_size, "vocab_size": tokenizer_from_json(tokenizer_json).get_vocab_size(),
                "tokenizer": "tokenizer.json", "shards": shards, "blocks": sum(s["blocks"] for s in shards),
                "tokens": sum(s["tokens"] for s in shards), "documents": sum(r["documents"] for r in results),
                "skipped": skipped, "sources": [str(s) for s in sources]}
    if manifest["blocks"] < 2:
        raise DataError(f"the corpus gave {manifest['blocks']} block of {block_size} tokens; give more text")
    write_json(out / MANIFEST, manifest)
    return manifest


class ShardedBlocks:
    """Masked training batches streamed from the shards (the first shard's first `held_out`
    blocks are the validation set and never trained on). Each epoch visits the shards in a
    fresh order and each shard's blocks shuffled; masks come from (seed, epoch, batch), so a
    resume at any batch sees the same ones. Memory: the shards in use, memory-mapped.

    Data-parallel (`world` ranks): every rank walks the same global batches and takes its
    `rank`-th share of each, masked as the whole batch is, so the ranks together train on
    exactly the batches one process would; a last batch smaller than the global batch is
    left out there, as no rank may take a step the others do not."""

    def __init__(self, folder, batch_size: int, rate: float, seed: int, held_out: int, rank: int = 0,
                 world: int = 1, fraction: float = 1.0):
        self.folder, self.manifest = Path(folder), read_manifest(folder)
        self.batch_size, self.rate, self.seed, self.held_out = batch_size, rate, seed, held_out
        self.rank, self.world = rank, world
        self.vocab_size = self.manifest["vocab_size"]
        self.counts = [int((s["blocks"] - (held_out if i == 0 else 0)) * fraction)  # a prefix of each shard: nested
                       for i, s in enumerate(self.manifest["shards"])]

    def __len__(self) -> int:
        blocks = sum(self.counts)
        return blocks // self.batch_size if self.world > 1 else -(-blocks // self.batch_size)

    def validation_blocks(self) -> np.ndarray:
        return np.asarray(self._open(0)[: self.held_out], dtype=np.int32)

    def _open(self, shard: int) -> np.ndarray:
        return np.load(self.folder / self.manifest["shards"][shard]["file"], mmap_mode="r", allow_pickle=False)

    def _rows(self, epoch: int):
        """(shard, row) in this epoch's order, lazily."""
        generator = np.random.default_rng([self.seed, epoch])
        for shard in generator.permutation(len(self.counts)):
            offset = self.held_out if shard == 0 else 0
            for row in generator.permutation(self.counts[shard]) + offset:
                yield int(shard), int(row)

    def epoch(self, epoch: int, start: int = 0):
        opened: dict[int, np.ndarray] = {}
        batch, b = [], 0
        for position, (shard, row) in enumerate(self._rows(epoch)):
            if position < start * self.batch_size:
                continue
            if shard not in opened:  # only the shards this batch draws from stay mapped
                in_batch = {s for s, _ in batch}
                opened = {k: v for k, v in opened.items() if k in in_batch}
                opened[shard] = self._open(shard)
            batch.append((shard, row))
            if len(batch) == self.batch_size:
                yield self._batch(opened, batch, epoch, start + b)
                batch, b = [], b + 1
        if batch and self.world == 1:
            yield self._batch(opened, batch, epoch, start + b)

    def _batch(self, opened: dict, batch: list, epoch: int, index: int):
        ids = torch.from_numpy(np.stack([opened[s][r] for s, r in batch]).astype(np.int64))
        generator = torch.Generator().manual_seed((self.seed * 1009 + epoch) * 100_003 + index)
        inputs, labels = mask_tokens(ids, self.vocab_size, self.rate, generator)
        if self.world > 1:
            share = slice(self.rank * len(ids) // self.world, (self.rank + 1) * len(ids) // self.world)
            ids, inputs, labels = ids[share], inputs[share], labels[share]
        return (inputs, segments_of(ids), labels), labels[labels >= 0]
