"""Click-through models over a table's dense features and embedded categories (ids): Wide & Deep
(Cheng et al. 2016) and DeepFM (Guo et al. 2017). Both read the table modality's inputs
(dense columns, category codes with 0 for unknown) as TabularNet does.

- Every id field's table holds at most HASH_BUCKETS rows: codes above it share rows by a
  modulo (the hashing trick), so ten million ids cost a bounded table and still train.
- Wide & Deep: a linear part — a weight per dense column, per category, and per hashed pair of
  categories of two fields (the "cross-product transformations" that let the wide part
  memorize that this user clicks this item) — plus an MLP over the dense columns and the
  fields' embeddings.
- DeepFM: the linear part without the crosses, plus a factorization machine over every field
  (each id field's embedding, and each dense column's vector times its value): the sum over
  pairs of fields of their embeddings' dot products, in O(fields × dim); and an MLP over the
  same embeddings, shared with the FM.
"""
from __future__ import annotations

import torch
from torch import nn

HASH_BUCKETS = 1 << 20   # rows of one id field's tables at most (codes past it share rows)
CROSS_BUCKETS = 1 << 18  # rows of the wide part's table of hashed pairs of categories
MAX_CROSSED = 8          # the first fields whose pairs are crossed (28 pairs at most)
_PAIR_PRIME = 1_000_003


def bucketed(codes: torch.Tensor, rows: int) -> torch.Tensor:
    return codes if rows < HASH_BUCKETS else torch.remainder(codes, HASH_BUCKETS)


class Fields(nn.Module):
    """One embedding and one linear weight per category of each id field, hashed past HASH_BUCKETS."""

    def __init__(self, cardinalities: list[int], dim: int, n_out: int):
        super().__init__()
        self.rows = [min(c + 1, HASH_BUCKETS) for c in cardinalities]
        self.vectors = nn.ModuleList(nn.Embedding(r, dim) for r in self.rows)
        self.weights = nn.ModuleList(nn.Embedding(r, n_out) for r in self.rows)
        for table in self.weights:
            nn.init.zeros_(table.weight)
        for table in self.vectors:  # small: N(0, 1) vectors make the FM's pairwise sums explode at the start
            nn.init.normal_(table.weight, std=0.01)

    def codes(self, categories: torch.Tensor) -> list[torch.Tensor]:
        return [bucketed(categories[:, i], rows) for i, rows in enumerate(self.rows)]

    def embedded(self, codes: list[torch.Tensor]) -> list[torch.Tensor]:
        return [table(c) for table, c in zip(self.vectors, codes)]

    def linear(self, codes: list[torch.Tensor]) -> torch.Tensor | float:
        return sum((table(c) for table, c in zip(self.weights, codes)), 0.0)


class Crosses(nn.Module):
    """A weight per hashed pair (field i's category, field j's category) for i < j."""

    def __init__(self, n_fields: int, n_out: int):
        super().__init__()
        fields = min(n_fields, MAX_CROSSED)
        self.pairs = [(i, j) for i in range(fields) for j in range(i + 1, fields)]
        self.table = nn.Embedding(CROSS_BUCKETS, n_out)
        nn.init.zeros_(self.table.weight)

    def forward(self, codes: list[torch.Tensor]) -> torch.Tensor | float:
        total = 0.0
        for number, (i, j) in enumerate(self.pairs):
            key = (codes[i] * _PAIR_PRIME + codes[j]) * 31 + number
            total = total + self.table(torch.remainder(key, CROSS_BUCKETS))
        return total


class ClickNet(nn.Module):
    """The linear part, then an FM (DeepFM) or hashed crosses (Wide & Deep), plus the deep MLP."""

    def __init__(self, n_dense: int, cardinalities: list[int], dim: int, n_out: int, deep: nn.Module,
                 factorized: bool):
        super().__init__()
        self.dense_linear = nn.Linear(n_dense, n_out)
        self.fields = Fields(cardinalities, dim, n_out)
        self.crosses = None if factorized else Crosses(len(cardinalities), n_out)
        self.dense_vectors = nn.Parameter(torch.randn(n_dense, dim) * 0.01) if factorized else None
        # the FM's per-dimension terms summed into each output (ones: the FM itself, a single logit under bce;
        # learned, so that under cross_entropy's two outputs the term does not cancel out)
        self.fm_out = nn.Parameter(torch.ones(dim, n_out) * torch.tensor([-1.0] * (n_out - 1) + [1.0])) \
            if factorized else None
        self.deep = deep

    def forward(self, dense: torch.Tensor, categories: torch.Tensor | None = None) -> torch.Tensor:
        codes = self.fields.codes(categories) if categories is not None else []
        vectors = self.fields.embedded(codes)
        out = self.dense_linear(dense) + self.fields.linear(codes)
        if self.crosses is not None:
            out = out + self.crosses(codes)
        if self.dense_vectors is not None:
            out = out + self.interactions(dense, vectors)
        return out + self.deep(torch.cat([dense] + vectors, dim=1))

    def interactions(self, dense: torch.Tensor, vectors: list[torch.Tensor]) -> torch.Tensor:
        """The FM's pairwise term: ½ Σ_d [(Σ_f v_fd)² − Σ_f v_fd²] over every field's vector."""
        every = torch.cat([dense.unsqueeze(2) * self.dense_vectors] + [v.unsqueeze(1) for v in vectors], dim=1)
        return 0.5 * (every.sum(1).pow(2) - every.pow(2).sum(1)) @ self.fm_out
