"""Packed blocks' segment numbers, and BERT's masking of them.

Blocks are packed by pretraining/packing.py. Every token carries its document's segment
number (1, 2, … within the block; 0 is padding), and the encoder's attention is masked by it
(models/transformer.attention_mask): no token sees another document, so packing changes no
document's context except where one was split. Blocks waste no compute on padding, unlike one
document per padded row.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from scaletrain.pretraining.packing import CLS, FIRST_ORDINARY, MASK, PAD, SEP, UNK, iter_blocks  # noqa: F401 (the ids' home for importers)


def segments_of(ids: torch.Tensor) -> torch.Tensor:
    """Each token's document within its block: 1 + the [SEP]s before it (a block's [CLS] and a
    continued document count as its first), 0 for padding."""
    sep = (ids == SEP).long()
    before = torch.cumsum(sep, dim=1) - sep
    return torch.where(ids == PAD, torch.zeros_like(before), before + 1)


def pack(documents: Iterable[list[int]], length: int) -> tuple[np.ndarray, np.ndarray]:
    """All blocks in memory: token ids (blocks, length) uint16 and segment numbers."""
    chunks = list(iter_blocks(documents, length))
    ids = np.concatenate(chunks) if chunks else np.zeros((0, length), np.uint16)
    return ids, segments_of(torch.from_numpy(ids.astype(np.int64))).numpy().astype(np.int16)


def mask_tokens(ids: torch.Tensor, vocab_size: int, rate: float, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption: `rate` of the ordinary tokens chosen; of those 80% become
    [MASK], 10% a random ordinary token, 10% stay. Returns (inputs, labels), labels -100 where
    nothing is predicted. Drawn from `generator`, so a seed and a position give the same masks."""
    ids = ids.long()
    chosen = (torch.rand(ids.shape, generator=generator) < rate) & (ids >= FIRST_ORDINARY)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(FIRST_ORDINARY, vocab_size, ids.shape, generator=generator)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, MASK), ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


class MaskedBlocks:
    """Training batches of packed blocks, masked anew each epoch: the epoch's order and every
    batch's masks come from (seed, epoch, batch), so a resume at any batch sees the same."""

    def __init__(self, ids: np.ndarray, segments: np.ndarray, batch_size: int, vocab_size: int, rate: float,
                 seed: int, shuffle: bool = True):
        self.ids, self.segments = torch.from_numpy(ids), torch.from_numpy(segments)
        self.batch_size, self.vocab_size, self.rate, self.seed, self.shuffle = batch_size, vocab_size, rate, seed, shuffle

    def __len__(self) -> int:
        return -(-len(self.ids) // self.batch_size)

    def epoch(self, epoch: int, start: int = 0):
        order = torch.randperm(len(self.ids), generator=torch.Generator().manual_seed(self.seed * 1009 + epoch)) \
            if self.shuffle else torch.arange(len(self.ids))
        for b in range(start, len(self)):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            generator = torch.Generator().manual_seed((self.seed * 1009 + epoch) * 100_003 + b)
            inputs, labels = mask_tokens(self.ids[rows], self.vocab_size, self.rate, generator)
            # the model scores the chosen positions only: the vocabulary-wide output layer is
            # the costliest matrix product, and 85% of its rows would be thrown away
            yield (inputs, self.segments[rows].long(), labels), labels[labels >= 0]
