"""Image preprocessing: the state fitted on training pixels, and images as tensors."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def fit_images(images: np.ndarray) -> dict:
    """Return the image state: size, channels and per-channel mean/std of training pixels."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    std = pixels.std(axis=0)
    return {"kind": "image", "size": [int(images.shape[1]), int(images.shape[2])],
            "channels": int(images.shape[3]), "mean": pixels.mean(axis=0).tolist(),
            "std": [float(s) if s > 1e-6 else 1.0 for s in std]}


def transform_images(images: np.ndarray) -> torch.Tensor:
    """Return images as a uint8 NCHW tensor; scaling to floats happens per batch."""
    import torch  # not at import: `scaletrain prepare` runs without torch

    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
