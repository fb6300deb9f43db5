"""Augmentation of standardized log-mel batches: SpecAugment (Park et al. 2019: bands and
stretches of time masked to the bands' mean) and a random time shift. Working on the
spectrograms, not the waveforms, keeps the features computed once per clip instead of once per
clip and epoch: what a 2-core machine can afford."""
from __future__ import annotations

import torch

FREQ_MASKS, FREQ_WIDTH = 2, 0.12   # two masks of up to 12% of the bands each
TIME_MASKS, TIME_WIDTH = 2, 0.10   # two masks of up to 10% of the frames each
SHIFT = 0.10                       # clips move by up to 10% of their frames, the gap silent (0 after standardizing)


class SpecAugment:
    """Callable (batch (n, 1, mels, frames), epoch) -> augmented batch, reproducible from the seed."""

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed + 104_729)

    def _masks(self, n: int, size: int, count: int, width: float) -> torch.Tensor:
        """(n, size) True where one of `count` random stretches of up to width*size covers."""
        position = torch.arange(size)
        hidden = torch.zeros(n, size, dtype=torch.bool)
        for _ in range(count):
            length = (torch.rand(n, generator=self.generator) * width * size).long()
            start = (torch.rand(n, generator=self.generator) * (size - length + 1)).long()
            hidden |= (position >= start[:, None]) & (position < (start + length)[:, None])
        return hidden

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        n, frames = x.shape[0], x.shape[-1]
        moves = ((torch.rand(n, generator=self.generator) * 2 - 1) * SHIFT * frames).long()
        source = torch.arange(frames)[None, :] - moves[:, None]
        inside = (source >= 0) & (source < frames)
        gathered = torch.gather(x, 3, source.clamp(0, frames - 1)[:, None, None, :].expand_as(x).to(x.device))
        return gathered * inside[:, None, None, :].to(x.device, x.dtype)

    def __call__(self, x: torch.Tensor, epoch: int) -> torch.Tensor:
        n, _, mels, frames = x.shape
        x = self.shift(x)
        bands = self._masks(n, mels, FREQ_MASKS, FREQ_WIDTH)[:, None, :, None]
        times = self._masks(n, frames, TIME_MASKS, TIME_WIDTH)[:, None, None, :]
        return x.masked_fill((bands | times).to(x.device), 0.0)
