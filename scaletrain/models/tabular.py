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


class TextBag(nn.Module):
    """fastText's text encoder: the idf-weighted mean embedding of a text's word pieces and the
    mean of its hashed piece pairs (bigrams carry word order a bag of pieces loses), padding
    ignored. Fast and strong when labels are few; the Transformer is the encoder for large data."""

    DIM = 64
    PRIME = 1_000_003  # spreads (a, b) pairs over the buckets

    def __init__(self, vocab_size: int, dim: int = DIM):
        super().__init__()
        self.buckets = vocab_size
        self.pieces = nn.EmbeddingBag(vocab_size, dim, mode="sum", padding_idx=0)  # weights: an idf mean
        self.pairs = nn.EmbeddingBag(vocab_size + 1, dim, mode="mean", padding_idx=0)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        a, b = tokens[:, :-1], tokens[:, 1:]
        pairs = torch.where((a > 0) & (b > 0), (a * self.PRIME + b) % self.buckets + 1, torch.zeros_like(a))
        return torch.cat([self.pieces(tokens, per_sample_weights=weights), self.pairs(pairs)], dim=1)


class TabularNet(nn.Module):
    """Embeds high-cardinality categories (and free text, as a bag of pieces), concatenates
    them to dense features, runs a body."""

    def __init__(self, n_dense: int, cardinalities: list[int], embedding_dim: int, body_fn, vocab_size: int = 0):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, embedding_dim) for c in cardinalities)
        self.text = TextBag(vocab_size) if vocab_size else None
        self.body = body_fn(n_dense + embedding_dim * len(cardinalities) + (2 * TextBag.DIM if vocab_size else 0))

    def forward(self, dense: torch.Tensor, categories: torch.Tensor | None = None,
                tokens: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        parts = [dense] + [emb(categories[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.text is not None:
            parts.append(self.text(tokens, weights))
        return self.body(torch.cat(parts, dim=1) if len(parts) > 1 else dense)


class FlatImageNet(nn.Module):
    """Normalizes and flattens images so linear and MLP bodies can take them."""

    def __init__(self, normalize: nn.Module, body: nn.Module):
        super().__init__()
        self.normalize, self.body = normalize, body

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(images).flatten(1))

