"""Recurrent encoders (`model.name=rnn`): a GRU or LSTM over a sequence of vectors, its states
pooled (mean over the steps, or max and mean) or its last state taken, the row's other numbers
joined, then a linear head; and over a table's free text (RecurrentText), its word pieces embedded.

Input: a sound clip's spectrogram (batch, 1, mels, frames), read as its frames (one vector of
mel bands per step); or padded sequences (batch, steps, features) with their lengths and the
row's other numbers. Padding never reaches a state that is read: the forward direction's
states up to each end are exact, the backward direction reads each sequence reversed within
its own length (a gather), and pooling and the last state look at real steps only. So a
sequence gets the same prediction however far it is padded (exported graphs pad to one length).
torch's `nn.GRU`/`nn.LSTM` do the recurrence, one direction and layer at a time: a
hand-written cell would be many times slower on both CPU and GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def as_steps(x: torch.Tensor) -> torch.Tensor:
    """(batch, steps, features): a spectrogram's frames as its steps, sequences as they are."""
    return x.squeeze(1).transpose(1, 2) if x.dim() == 4 else x


def step_mask(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(batch, steps) true at each sequence's real steps."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    return steps.expand(x.shape[0], -1) >= 0 if lengths is None else steps < lengths[:, None]


def reversed_within(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence's real steps in reverse order, the padding where it was."""
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
    return torch.gather(x, 1, index[:, :, None].expand(-1, -1, x.shape[2]))


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(states.dtype)[:, :, None]
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@dataclass(frozen=True)
class Recurrence:
    """The recurrent encoder's shape (config model.cell, width, depth, bidirectional, pooling)."""

    cell: str = "gru"
    width: int = 64
    layers: int = 2
    bidirectional: bool = True
    pooling: str = "mean"  # or "last", or "max_mean" (both, concatenated)


def stacked_cells(shape: Recurrence, n_in: int) -> tuple[nn.ModuleList, nn.ModuleList | None]:
    """One cell per layer and direction (torch's own GRU/LSTM, one direction each)."""
    width = shape.width * (2 if shape.bidirectional else 1)
    sizes = [n_in] + [width] * (shape.layers - 1)
    forwards = nn.ModuleList(CELLS[shape.cell](n, shape.width, batch_first=True) for n in sizes)
    backwards = nn.ModuleList(CELLS[shape.cell](n, shape.width, batch_first=True) for n in sizes) \
        if shape.bidirectional else None
    return forwards, backwards


def recur(x: torch.Tensor, lengths: torch.Tensor | None, forwards: nn.ModuleList, backwards: nn.ModuleList | None,
          dropout: nn.Module) -> torch.Tensor:
    """The last layer's states (batch, steps, width x directions)."""
    for i, forward in enumerate(forwards):
        if i:
            x = dropout(x)
        states, _ = forward(x)
        if backwards is not None:
            backward, _ = backwards[i](reversed_within(x, lengths))
            states = torch.cat([states, reversed_within(backward, lengths)], dim=-1)
        x = states
    return x


def max_and_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each feature's largest value over the real steps beside its mean (0 for a row with none)."""
    largest = states.masked_fill(~mask[:, :, None], torch.finfo(states.dtype).min).amax(1)
    largest = torch.where(mask.any(1, keepdim=True), largest, torch.zeros_like(largest))
    return torch.cat([largest, masked_mean(states, mask)], dim=1)


class RecurrentNet(nn.Module):
    def __init__(self, n_in: int, n_out: int, shape: Recurrence = Recurrence(), dropout: float = 0.0,
                 n_extra: int = 0):
        super().__init__()
        self.pooling, self.bidirectional = shape.pooling, shape.bidirectional
        directions = 2 if shape.bidirectional else 1
        self.forwards, self.backwards = stacked_cells(shape, n_in)
        self.dropout = nn.Dropout(dropout)
        pooled = shape.width * directions * (2 if shape.pooling == "max_mean" else 1)
        self.head = nn.Linear(pooled + n_extra, n_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, extras: torch.Tensor | None = None):
        x = recur(as_steps(x), lengths, self.forwards, self.backwards, self.dropout)
        if self.pooling == "last":
            pooled = self._last(x, lengths)
        else:
            mask = step_mask(x, lengths)
            pooled = max_and_mean(x, mask) if self.pooling == "max_mean" else masked_mean(x, mask)
        if extras is not None:
            pooled = torch.cat([pooled, extras], dim=1)
        return self.head(self.dropout(pooled))

    def _last(self, states: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The forward direction's state at each sequence's end and the backward's at its start."""
        end = (torch.full(states.shape[:1], states.shape[1], device=states.device) if lengths is None else lengths) - 1
        last = torch.gather(states, 1, end[:, None, None].expand(-1, 1, states.shape[2])).squeeze(1)
        if not self.bidirectional:
            return last
        half = states.shape[-1] // 2
        return torch.cat([last[:, :half], states[:, 0, half:]], dim=-1)


class RecurrentText(nn.Module):
    """A table's free text read in order: its word pieces embedded, a bidirectional GRU over
    them, each state feature's max and mean over the real pieces (`width` features, joined to
    the table's other columns by TabularNet). Where a bag of pieces and pairs (TF-IDF + linear)
    misses what order says ("not what I expected", "would not recommend"), this reads it, and it
    errs differently: clothing reviews → recommended, test ROC AUC 0.9557 for zero-config's
    TF-IDF linear model, 0.9568 for this encoder, 0.9603 for the two blended (BENCHMARKS.md). Max
    beside mean: one strong phrase decides a review, an average over 100 pieces dilutes it.

    A piece taken out (explain/text.py sets its id to padding) is read as a zero vector and not
    pooled; the text's length runs to its last real piece, so the backward direction starts
    there. Training cuts each batch to its longest text (the padding after it changes nothing:
    see RecurrentNet); an exported graph reads the whole padded length."""

    DIM = 128  # the pieces' embedding width

    def __init__(self, vocab_size: int, shape: Recurrence, dropout: float = 0.0):
        super().__init__()
        self.pieces = nn.Embedding(vocab_size, self.DIM, padding_idx=0)
        self.forwards, self.backwards = stacked_cells(shape, self.DIM)
        self.dropout = nn.Dropout(dropout)
        self.max_too = shape.pooling == "max_mean"
        self.width = (2 if self.max_too else 1) * shape.width * (2 if shape.bidirectional else 1)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        real = tokens != 0
        ends = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)[None, :] * real
        lengths = ends.amax(1).clamp(min=1)
        if not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()):
            longest = int(lengths.max())
            tokens, real = tokens[:, :longest], real[:, :longest]
        states = recur(self.dropout(self.pieces(tokens)), lengths, self.forwards, self.backwards, self.dropout)
        return self.dropout(max_and_mean(states, real) if self.max_too else masked_mean(states, real))
