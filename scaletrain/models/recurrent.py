"""Recurrent encoders (`model.name=rnn`): a GRU or LSTM over a sequence of vectors, its states
pooled (mean over the steps) or its last state taken, the row's other numbers joined, then a
linear head.

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
    pooling: str = "mean"  # or "last"


class RecurrentNet(nn.Module):
    def __init__(self, n_in: int, n_out: int, shape: Recurrence = Recurrence(), dropout: float = 0.0,
                 n_extra: int = 0):
        super().__init__()
        self.pooling, self.bidirectional = shape.pooling, shape.bidirectional
        directions, width = 2 if shape.bidirectional else 1, shape.width
        sizes = [n_in] + [width * directions] * (shape.layers - 1)
        self.forwards = nn.ModuleList(CELLS[shape.cell](n, width, batch_first=True) for n in sizes)
        self.backwards = nn.ModuleList(CELLS[shape.cell](n, width, batch_first=True) for n in sizes) \
            if shape.bidirectional else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width * directions + n_extra, n_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, extras: torch.Tensor | None = None):
        x = as_steps(x)
        for i, forward in enumerate(self.forwards):
            if i:
                x = self.dropout(x)
            states, _ = forward(x)
            if self.backwards is not None:
                backward, _ = self.backwards[i](reversed_within(x, lengths))
                states = torch.cat([states, reversed_within(backward, lengths)], dim=-1)
            x = states
        pooled = masked_mean(x, step_mask(x, lengths)) if self.pooling == "mean" else self._last(x, lengths)
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
