"""Matrix factorization trained with BPR (Rendle et al. 2009, "BPR: Bayesian Personalized
Ranking from Implicit Feedback"): a vector per user and per item and a bias per item; a user's
score for an item is their dot product plus the bias. Each step takes a batch of observed
(user, item) pairs and one item per pair drawn uniformly from the catalogue — on the fly, in
one vectorized draw — and raises the observed item's score above the drawn one's:
−log σ(s(u, i) − s(u, j)). A drawn item the user has in fact seen is kept (at MovieLens'
density 6% of draws; rejecting them costs a lookup per pair and changes little).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

LR, L2 = 0.01, 1e-5  # first defaults, not yet chosen on a panel (BENCHMARKS.md, "ranking, first slice")


class Factorization(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int = 64):
        super().__init__()
        self.users, self.items = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        self.bias = nn.Parameter(torch.zeros(n_items))
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.users(users) * self.items(items)).sum(-1) + self.bias[items]

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        """(users, items) scores over the whole catalogue."""
        return self.users(users) @ self.items.weight.T + self.bias


def fit_bpr(indptr: np.ndarray, indices: np.ndarray, n_items: int, dim: int = 64, epochs: int = 30,
            seed: int = 0, batch: int = 1024) -> Factorization:
    """A factorization fitted by BPR on the users' interactions (CSR rows indptr/indices):
    Adam (LR) on batches of `batch` pairs, L2 on the vectors each batch touches."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n_users = len(indptr) - 1
    model = Factorization(n_users, n_items, dim)
    users = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(indptr)))
    items = torch.from_numpy(indices.astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(epochs):
        for chosen in torch.randperm(len(users), generator=generator).split(batch):
            u, i = users[chosen], items[chosen]
            j = torch.randint(0, n_items, (len(chosen),), generator=generator)
            margin = model.pair_scores(u, i) - model.pair_scores(u, j)
            penalty = model.users(u).pow(2).sum() + model.items(i).pow(2).sum() + model.items(j).pow(2).sum()
            loss = -nn.functional.logsigmoid(margin).mean() + L2 * penalty
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
