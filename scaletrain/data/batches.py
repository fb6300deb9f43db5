"""In-memory batches: whole tensors indexed by a shuffled permutation, no per-sample Python.

A torch DataLoader calls Python once per sample; for data that fits in memory that costs
more than a small model's step, so we slice tensors directly.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch


class TensorBatches:
    """Yields (inputs, target) batches; shuffled per epoch with a seeded generator.

    With `world` ranks, every rank draws the same permutation and takes its `batch_size` rows
    of each global batch of batch_size * world rows: together the ranks see exactly the
    batches one process would; the last, partial global batch is dropped so that every rank
    takes as many steps (an all-reduce waits for all of them).
    """

    def __init__(self, inputs: tuple[torch.Tensor, ...], target: torch.Tensor | None, batch_size: int,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 transform: Callable[[torch.Tensor, bool], torch.Tensor] | None = None,
                 rank: int = 0, world: int = 1):
        self.inputs, self.target = inputs, target
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.transform = transform  # e.g. uint8 images -> augmented floats, applied per batch
        self.n = len(inputs[0])
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        if self.world > 1:
            return self.n // (self.batch_size * self.world)
        full, rest = divmod(self.n, self.batch_size)
        return full if (self.drop_last and full) else full + bool(rest)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]]:
        """Yield the epoch's batches from batch `start` on (a resume skips without transforming)."""
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
        else:
            order = None
        for b in range(start, len(self)):
            first = b * self.batch_size * self.world + self.rank * self.batch_size
            rows = slice(first, min(first + self.batch_size, self.n))
            index = order[rows] if order is not None else rows
            inputs = tuple(t[index] for t in self.inputs)
            if self.transform is not None:
                inputs = (self.transform(inputs[0], epoch), *inputs[1:])
            yield inputs, (None if self.target is None else self.target[index])

    def __iter__(self):
        return self.epoch(0)
