"""Batched image augmentation on tensors: one affine warp for the whole batch, on any device.

Written on plain torch ops (affine_grid + grid_sample) rather than per-image PIL or a
torchvision dependency: a batch costs a few kernel calls and runs on CPU or GPU alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Return uint8 images as floats in [0, 1]."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


@dataclass
class AugmentSettings:
    shift: float = 0.0     # max translation, as a fraction of the side
    flip: bool = False     # horizontal flip with probability 0.5
    rotate: float = 0.0    # max rotation in degrees
    scale: float = 0.0     # max relative zoom in or out
    noise: float = 0.0     # std of added Gaussian noise
    erase: float = 0.0     # probability of erasing one random rectangle

    @property
    def active(self) -> bool:
        return bool(self.shift or self.flip or self.rotate or self.scale or self.noise or self.erase)


class ImageAugment:
    """Callable (batch of [0,1] floats, epoch) -> augmented batch, reproducible from the seed."""

    def __init__(self, settings: AugmentSettings, seed: int = 0):
        self.settings = settings
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def _uniform(self, n: int, bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) * 2 - 1) * bound

    def warp(self, x: torch.Tensor) -> torch.Tensor:
        s, n = self.settings, x.shape[0]
        angle = self._uniform(n, math.radians(s.rotate))
        zoom = 1 + self._uniform(n, s.scale)
        flip = torch.where(torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0) if s.flip else torch.ones(n)
        tx, ty = self._uniform(n, 2 * s.shift), self._uniform(n, 2 * s.shift)  # grid units span 2
        whole_pixels = not (s.rotate or s.scale)
        if whole_pixels:
            # shifts by whole pixels, read with `nearest`: a pixel-exact crop as the speed-run
            # recipes take it; a bilinear sub-pixel shift blurs every training image, so the
            # net trains on softer images than it is tested on
            tx = torch.round(tx * x.shape[3] / 2) * 2 / x.shape[3]
            ty = torch.round(ty * x.shape[2] / 2) * 2 / x.shape[2]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="nearest" if whole_pixels else "bilinear", padding_mode="zeros",
                             align_corners=False)

    def erase(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        hit = torch.rand(n, generator=self.generator) < self.settings.erase
        eh = (torch.rand(n, generator=self.generator) * 0.3 + 0.1) * h
        ew = (torch.rand(n, generator=self.generator) * 0.3 + 0.1) * w
        top = torch.rand(n, generator=self.generator) * (h - eh)
        left = torch.rand(n, generator=self.generator) * (w - ew)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
               & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)) & hit.view(n, 1, 1))
        return x.masked_fill(box.unsqueeze(1).to(x.device), 0.0)

    def __call__(self, x: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        x = to_float(x)
        s = self.settings
        if s.shift or s.flip or s.rotate or s.scale:
            x = self.warp(x)
        if s.noise:
            x = x + s.noise * torch.randn(x.shape, generator=self.generator).to(x.device)
        if s.erase:
            x = self.erase(x)
        return x
