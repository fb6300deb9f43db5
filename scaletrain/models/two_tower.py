"""A two-tower recommender: an item tower turns each item's id and features (numbers, hashed
words: recommend/sides.py) into a vector; the user tower is the recency-weighted mean of the
vectors of the items in the user's history, so a user is described by what they did, not by
an id (a new user with a history is served without retraining), plus — when users have a side
table — a vector from the user's own features, so a user with no history yet is ranked by who
they are. A user's score for an item is the dot product plus the item's bias.

Only the ids of items seen in training keep their embedding (the others' is zeroed after
training), so an item with features and no interactions is ranked by its features alone: the
cold-start case matrix factorization and EASE cannot rank. Trained by a softmax over the whole catalogue for each
(user, item) pair, with the item taken out of the user's history first (else the tower
would learn to find the item in its own input).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

LR, WEIGHT_DECAY, BATCH = 3e-3, 1e-5, 1024
# with a users side table, this share of each batch's users is seen through their features alone
# (their history dropped), so the features learn to rank for a user who has no history yet
HISTORY_DROPOUT = 0.2
MIN_STEPS = 300  # a small log gets more passes: 10 passes of 2 batches leave the towers untrained


class Features(nn.Module):
    """A side table's rows as vectors: the mean of their words' embeddings + a projection of their numbers."""

    def __init__(self, dim: int, n_numbers: int, token_buckets: int):
        super().__init__()
        self.words = nn.EmbeddingBag(token_buckets, dim, mode="mean")
        nn.init.normal_(self.words.weight, std=0.05)
        self.numbers = nn.Linear(n_numbers, dim, bias=False) if n_numbers else None

    def forward(self, tokens: torch.Tensor, offsets: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        vectors = self.words(tokens, offsets[:-1])
        return vectors if self.numbers is None else vectors + self.numbers(numbers)


def buckets(tokens: torch.Tensor) -> int:
    return int(tokens.max()) + 1 if len(tokens) else 1


class TwoTower(nn.Module):
    def __init__(self, n_items: int, dim: int, items: tuple, user_side=None):
        super().__init__()
        self.ids = nn.Embedding(n_items, dim)
        nn.init.normal_(self.ids.weight, std=0.01)  # not zero: with no features, zero vectors get no gradient
        self.items = Features(dim, items[2].shape[1], buckets(items[0]))
        self.users = None if user_side is None else Features(dim, user_side.numbers.shape[1], buckets(user_side.tokens))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def item_vectors(self, tokens: torch.Tensor, offsets: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """(items, dim): id embedding + the item's features' vector."""
        return self.ids.weight + self.items(tokens, offsets, numbers)

    def user_vectors(self, user_side, which: torch.Tensor) -> torch.Tensor:
        """(len(which), dim): the users' features' vectors (zeros without a users side table)."""
        if self.users is None:
            return torch.zeros(len(which), self.ids.embedding_dim)
        return self.users(*user_side.rows(which))


def fit_two_tower(weights, features: tuple, n_items: int, dim: int, epochs: int, seed: int,
                  user_side=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(item vectors, item bias, the users' feature vectors or None) trained on every (user, item)
    of `weights`, a scipy CSR matrix of history weights (users, items); `features` is the items'
    (tokens, offsets, numbers), `user_side` the users' side table (recommend/sides.SideFeatures) or
    None. A batch's users are read as bags of their items (an embedding bag with the weights):
    the cost is their history's length, not the catalogue's."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tokens, offsets, numbers = features
    model = TwoTower(n_items, dim, features, user_side)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    users = torch.from_numpy(np.repeat(np.arange(weights.shape[0]), np.diff(weights.indptr)))
    items = torch.from_numpy(weights.indices.astype(np.int64))
    for _ in range(max(epochs, -(-MIN_STEPS // -(-len(users) // BATCH)))):
        for chosen in torch.randperm(len(users), generator=generator).split(BATCH):
            u, i = users[chosen], items[chosen]
            bags = weights[u.numpy()]
            flat = torch.from_numpy(bags.indices.astype(np.int64))
            owner = torch.repeat_interleave(torch.arange(len(u)), torch.from_numpy(np.diff(bags.indptr)))
            # the target out of its own input (else the tower learns to find the item in it)
            w = torch.where(flat == i[owner], 0.0, torch.from_numpy(bags.data.astype(np.float32)))
            vectors = model.item_vectors(tokens, offsets, numbers)
            summed = nn.functional.embedding_bag(flat, vectors, torch.from_numpy(bags.indptr[:-1].astype(np.int64)),
                                                 mode="sum", per_sample_weights=w)
            total = torch.zeros(len(u)).index_add_(0, owner, w).clamp(min=1e-6)
            query = summed / total[:, None]
            if user_side is not None:
                kept = torch.rand(len(u), generator=generator) >= HISTORY_DROPOUT
                query = query * kept[:, None] + model.user_vectors(user_side, u)
            loss = nn.functional.cross_entropy(query @ vectors.T + model.bias, i)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        seen = torch.zeros(n_items, dtype=torch.bool)
        seen[items] = True
        model.ids.weight[~seen] = 0.0  # untrained ids: noise; such an item is its features alone
        model.bias[~seen] = model.bias[seen].min() if seen.any() else 0.0
        people = None if user_side is None else torch.cat([model.user_vectors(user_side, part) for part in
                                                       torch.arange(weights.shape[0]).split(1 << 16)]).detach()
        return model.item_vectors(tokens, offsets, numbers).detach(), model.bias.detach().clone(), people
