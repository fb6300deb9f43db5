"""Recurrent encoders (`model.name=rnn`): a GRU or LSTM over a sequence of vectors, its states
pooled (mean over the steps) or its last state taken, then a linear head.

A sound clip's spectrogram (batch, 1, mels, frames) is read as its frames, one vector of mel
bands per step. torch's cuDNN-backed `nn.GRU`/`nn.LSTM` do the recurrence: a hand-written
cell would be many times slower on both CPU and GPU.
"""
from __future__ import annotations

import torch
from torch import nn

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentNet(nn.Module):
    def __init__(self, n_in: int, n_out: int, cell: str = "gru", width: int = 64, layers: int = 2,
                 bidirectional: bool = True, pooling: str = "mean", dropout: float = 0.0):
        super().__init__()
        self.pooling, self.bidirectional = pooling, bidirectional
        self.rnn = CELLS[cell](n_in, width, layers, batch_first=True, bidirectional=bidirectional,
                               dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width * (2 if bidirectional else 1), n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # a spectrogram: its frames are the steps, its bands each step's vector
            x = x.squeeze(1).transpose(1, 2)
        states, _ = self.rnn(x)
        if self.pooling == "mean":
            pooled = states.mean(dim=1)
        elif self.bidirectional:  # the forward pass ends at the last step, the backward one at the first
            half = states.shape[-1] // 2
            pooled = torch.cat([states[:, -1, :half], states[:, 0, half:]], dim=-1)
        else:
            pooled = states[:, -1]
        return self.head(self.dropout(pooled))
