"""A 1-d convolutional net over time (`model.name=conv1d`): residual blocks of dilated
convolutions across the steps (each step's features the channels), the mean and the maximum of
the last block over the real steps, the row's other numbers joined, then a linear head.

Input as the recurrent net's (models/recurrent.py): a spectrogram (its mel bands the channels,
its frames the steps) or padded sequences with their lengths. The padding is set to zero after
every block, so each real step sees zeros past the sequence's end whatever the padding's
length, as a convolution's own zero padding would give it: predictions do not depend on it.
Dilations 1, 2, 4, … give the last block a receptive field that grows with the depth at no cost
(the temporal convolutional networks of Bai et al. 2018, without their causal cut, which a
classifier of whole sequences does not need).
"""
from __future__ import annotations

import torch
from torch import nn

from scaletrain.models.recurrent import as_steps, step_mask

KERNEL = 5


class TimeBlock(nn.Module):
    def __init__(self, n_in: int, width: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(n_in, width, KERNEL, padding=dilation * (KERNEL // 2), dilation=dilation)
        self.norm = nn.BatchNorm1d(width)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(n_in, width, 1) if n_in != width else nn.Identity()

    def forward(self, x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        y = self.dropout(torch.relu(self.norm(self.conv(x))))
        return (y + self.skip(x)) * inside


class TimeConvNet(nn.Module):
    def __init__(self, n_in: int, n_out: int, width: int = 64, depth: int = 3, dropout: float = 0.0, n_extra: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(TimeBlock(n_in if i == 0 else width, width, 2 ** i, dropout) for i in range(depth))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width + n_extra, n_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, extras: torch.Tensor | None = None):
        x = as_steps(x)
        mask = step_mask(x, lengths)
        inside = mask[:, None, :].to(x.dtype)
        h = x.transpose(1, 2) * inside  # (batch, channels, steps)
        for block in self.blocks:
            h = block(h, inside)
        mean = h.sum(2) / inside.sum(2).clamp(min=1.0)
        peak = torch.where(mask[:, None, :], h, torch.full_like(h, -1e4)).amax(2)
        pooled = torch.cat([mean, peak], dim=1)
        if extras is not None:
            pooled = torch.cat([pooled, extras], dim=1)
        return self.head(self.dropout(pooled))
