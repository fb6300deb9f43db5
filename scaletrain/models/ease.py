"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): an item-item
weight matrix in closed form, B = I − P / diag(P) with P = (XᵀX + λI)⁻¹ and a zero diagonal,
so that a user's scores are their interactions times B. The strong linear baseline of
recommendation (issue 34): one matrix inverse, no training loop, and on MovieLens it matches
or beats matrix factorization. Its cost is an items × items matrix: fine up to tens of
thousands of items, not beyond (the two-tower model is the answer there).
"""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_L2 = 500.0  # Steck's value for MovieLens-sized data


def ease_weights(indptr: np.ndarray, indices: np.ndarray, n_items: int, l2: float = DEFAULT_L2) -> torch.Tensor:
    """(n_items, n_items) weights from the users' interactions (CSR rows indptr/indices)."""
    x = interaction_matrix(indptr, indices, n_items)
    gram = torch.from_numpy((x.T @ x).toarray()) + l2 * torch.eye(n_items, dtype=torch.float64)
    inverse = torch.linalg.inv(gram)
    weights = -inverse / torch.diagonal(inverse)[None, :]
    weights.fill_diagonal_(0.0)
    return weights.float()


def interaction_matrix(indptr: np.ndarray, indices: np.ndarray, n_items: int):
    """The users × items 0/1 matrix (scipy CSR) of the histories: an item logged twice counts once."""
    from scipy.sparse import csr_matrix

    x = csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(indptr) - 1, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def popularity(indices: np.ndarray, n_items: int) -> torch.Tensor:
    """Each item's interaction count: the baseline every recommender must beat."""
    return torch.from_numpy(np.bincount(indices, minlength=n_items).astype(np.float32))
