"""Augmentation of standardized log-mel batches: a random stretch of the mel axis (a voice
higher or lower, a longer or shorter vocal tract: vocal tract length perturbation, Jaitly &
Hinton 2013) and of the time axis (faster or slower speech), a random time shift, then
SpecAugment (Park et al. 2019: bands and stretches of time masked to the bands' mean).
Working on the spectrograms, not the waveforms, keeps the features computed once per clip
instead of once per clip and epoch: what a 2-core machine can afford."""
from __future__ import annotations

import torch
from torch import nn

FREQ_MASKS, FREQ_WIDTH = 2, 0.12   # two masks of up to 12% of the bands each
TIME_MASKS, TIME_WIDTH = 2, 0.10   # two masks of up to 10% of the frames each
SHIFT = 0.10                       # clips move by up to 10% of their frames, the gap silent (0 after standardizing)
PITCH = 0.15                       # the mel axis stretched by up to ±15% (anchored at the lowest band)
TEMPO = 0.15                       # the time axis stretched by up to ±15% (anchored at the start)


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

    def stretch(self, x: torch.Tensor) -> torch.Tensor:
        """Each spectrogram stretched along both axes, from its lowest band and first frame."""
        n = x.shape[0]
        pitch = 1 + (torch.rand(n, generator=self.generator) * 2 - 1) * PITCH
        tempo = 1 + (torch.rand(n, generator=self.generator) * 2 - 1) * TEMPO
        zero = torch.zeros(n)
        # output -> input coordinates in [-1, 1]: x_in = (x_out + 1) / s - 1 keeps -1 (the anchor) in place
        theta = torch.stack([torch.stack([1 / tempo, zero, 1 / tempo - 1], 1),
                             torch.stack([zero, 1 / pitch, 1 / pitch - 1], 1)], 1)
        grid = nn.functional.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def __call__(self, x: torch.Tensor, epoch: int) -> torch.Tensor:
        n, _, mels, frames = x.shape
        x = self.shift(self.stretch(x))
        bands = self._masks(n, mels, FREQ_MASKS, FREQ_WIDTH)[:, None, :, None]
        times = self._masks(n, frames, TIME_MASKS, TIME_WIDTH)[:, None, None, :]
        return x.masked_fill((bands | times).to(x.device), 0.0)
