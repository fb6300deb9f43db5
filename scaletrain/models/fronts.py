"""The first layers of an exported model: what predict does to its input before the model,
written as tensor operations so that the ONNX graph takes raw input."""
from __future__ import annotations

import torch
from torch import nn

from scaletrain.data.text import tfidf_weights


class ImageFront(nn.Module):
    """uint8 pixels (batch, height, width, channels), as images are stored, to the model's
    float NCHW input in [0, 1]; the per-channel normalization is the model's own first layer."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.permute(0, 3, 1, 2).float() / 255.0


class TextWeights(nn.Module):
    """Each token's TF-IDF weight, as preprocessing computes it (data.text.tfidf_weights)."""

    def __init__(self, idf: list[float]):
        super().__init__()
        self.register_buffer("idf", torch.tensor(idf, dtype=torch.float32))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return tfidf_weights(ids, self.idf)


class TableFront(nn.Module):
    """The table model's inputs from the exported graph's blocks: the dense block and category
    codes where the table has them (empty ones made here: a zero-width graph input is refused
    by some runtimes), the token ids of its text with their weights, and for each of its
    `pictures` image columns a (batch, 1) missing flag, then each column's uint8 pixels
    (batch, height, width, channels) turned channels-first."""

    def __init__(self, has_dense: bool, has_categories: bool, idf: list[float] | None, pictures: int = 0):
        super().__init__()
        self.has_dense, self.has_categories, self.pictures = has_dense, has_categories, pictures
        self.weights = TextWeights(idf) if idf is not None else None

    def forward(self, *blocks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        blocks = list(blocks)
        rows = blocks[0].shape[0]
        dense = blocks.pop(0) if self.has_dense else torch.zeros((rows, 0), dtype=torch.float32)
        if self.weights is None and not self.pictures:
            return (dense, blocks.pop(0)) if self.has_categories else (dense,)
        categories = blocks.pop(0) if self.has_categories else torch.zeros((rows, 0), dtype=torch.long)
        if self.weights is not None:
            tokens = blocks.pop(0)
            text = (tokens, self.weights(tokens))
        else:
            text = (torch.zeros((rows, 0), dtype=torch.long), torch.zeros((rows, 0), dtype=torch.float32))
        if not self.pictures:
            return (dense, categories, *text)
        absent = torch.cat([flag.float() for flag in blocks[:self.pictures]], dim=1)
        return (dense, categories, *text, absent,  # pixels arrive channels-last; a sound column's samples as they are
                *(p.permute(0, 3, 1, 2) if p.dim() == 4 else p for p in blocks[self.pictures:]))
