"""GF-CF (Shen et al. 2021, "How Powerful is Graph Convolution for Recommendation?"): item-item
weights in closed form from the normalized interaction matrix R̃ = D_u^-½ X D_i^-½ — a linear
filter R̃ᵀR̃ plus an ideal low-pass filter D_i^-½ V Vᵀ D_i^½ over R̃'s top singular vectors.
Alone it trails EASE on MovieLens, but its errors differ: blended into EASE's weights
(`blend_item_weights`) it lifted test NDCG@10 on the random 75/25 split from 0.4845 to
0.491–0.494 (BENCHMARKS.md). Like EASE its cost is an items × items matrix.
"""
from __future__ import annotations

import numpy as np
import torch

from scaletrain.models.ease import interaction_matrix

LOW_PASS_RANK = 48      # singular vectors in the low-pass filter: 32–64 measured alike on MovieLens
LOW_PASS_WEIGHT = 1.0   # the low-pass filter beside the linear one (0.5–4 measured alike)
SCALE_USERS = 1_000     # users whose scores set a weight matrix's scale (a sample: it is one number)


def graph_filter_weights(indptr: np.ndarray, indices: np.ndarray, n_items: int) -> torch.Tensor:
    """(n_items, n_items) GF-CF weights from the users' interactions (CSR rows indptr/indices)."""
    from scipy.sparse import diags
    from scipy.sparse.linalg import svds

    x = interaction_matrix(indptr, indices, n_items)
    item_degree = np.maximum(np.asarray(x.sum(0)).ravel(), 1.0)
    user_degree = np.maximum(np.asarray(x.sum(1)).ravel(), 1.0)
    normalized = (diags(1 / np.sqrt(user_degree)) @ x @ diags(1 / np.sqrt(item_degree))).tocsr()
    weights = (normalized.T @ normalized).toarray()
    rank = min(LOW_PASS_RANK, min(normalized.shape) // 4)  # near full rank it would pass everything: noise
    if rank >= 1 and normalized.nnz:
        start = np.random.default_rng(0).standard_normal(min(normalized.shape))  # ARPACK's start: seeded, so refits agree
        _, _, vt = svds(normalized, k=rank, v0=start)
        weights += LOW_PASS_WEIGHT * (vt.T / np.sqrt(item_degree)[:, None]) @ (vt * np.sqrt(item_degree)[None, :])
    np.fill_diagonal(weights, 0.0)  # a user's own item never supports itself (seen items are not ranked)
    return torch.from_numpy(weights).float()


def blend_item_weights(first: torch.Tensor, second: torch.Tensor, share: float, x) -> torch.Tensor:
    """(1 − share)·first + share·second, each first divided by the spread of the scores it gives
    unseen items (on a sample of users of the 0/1 matrix x): a blend of scores on one scale that
    is still one items × items matrix, so scoring, export and explanations stay EASE's."""
    sample = x[np.random.default_rng(0).permutation(x.shape[0])[:SCALE_USERS]]
    seen = torch.from_numpy(sample.toarray() > 0)

    def spread(weights: torch.Tensor) -> float:
        scores = torch.from_numpy(sample.toarray()).float() @ weights
        return float(scores[~seen].std()) or 1.0

    return (1 - share) * first / spread(first) + share * second / spread(second)
