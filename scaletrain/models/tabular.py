"""Linear/logistic and MLP models for tables (dense features plus category embeddings)."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def mlp_layers(n_in: int, hidden: list[int], n_out: int, activation: str, dropout: float, norm: str) -> nn.Sequential:
    """Return Linear → norm → activation → dropout blocks, then the output Linear."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(n_in, width))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class TabularNet(nn.Module):
    """Embeds high-cardinality categories, concatenates them to dense features, runs a body."""

    def __init__(self, n_dense: int, cardinalities: list[int], embedding_dim: int, body_fn):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, embedding_dim) for c in cardinalities)
        self.body = body_fn(n_dense + embedding_dim * len(cardinalities))

    def forward(self, dense: torch.Tensor, categories: torch.Tensor | None = None) -> torch.Tensor:
        if self.embeddings:
            parts = [dense] + [emb(categories[:, i]) for i, emb in enumerate(self.embeddings)]
            dense = torch.cat(parts, dim=1)
        return self.body(dense)


class FlatImageNet(nn.Module):
    """Normalizes and flattens images so linear and MLP bodies can take them."""

    def __init__(self, normalize: nn.Module, body: nn.Module):
        super().__init__()
        self.normalize, self.body = normalize, body

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(images).flatten(1))

