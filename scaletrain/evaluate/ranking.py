"""Top-k lists over the full catalogue and the ranking metrics users trust (issue 34, first slice).

Every item a user has not interacted with is ranked — no sampled negatives, which inflate
scores (RecBole's NDCG@10 of 0.331 with 100 sampled negatives was 0.246 fully ranked) — and the
items a user has already seen are never recommended. Scores are asked for a batch of users at a
time, so a users × items matrix is never held. Ties are broken by the lower item index, so
lists (and metrics) do not depend on the sort's whims.

Metrics, averaged over the users with at least one held-out item (the others are counted,
not scored):
- HR@k: a held-out item is in the top k;
- recall@k: the share of the user's held-out items in the top k;
- NDCG@k: the discounted gain 1 / log2(rank + 1) of the hits over the best possible;
- MAP@k: the mean over hits of the precision at each hit, over min(held-out items, k);
- coverage@k: the share of the catalogue that appears in some user's top k.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

USER_BATCH = 1024  # users scored at once: batch × items floats at a time
SCORE_CELLS = 1 << 22  # and at most this many (user, item) scores at once: 16 MB of floats


def seen_mask(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray, n_items: int) -> torch.Tensor:
    """(len(users), n_items) true where the user has seen the item (CSR rows indptr/indices)."""
    starts, ends = indptr[users], indptr[users + 1]
    rows = np.repeat(np.arange(len(users)), ends - starts)
    cols = np.concatenate([indices[s:e] for s, e in zip(starts, ends)]) if len(users) else np.zeros(0, np.int64)
    mask = torch.zeros((len(users), n_items), dtype=torch.bool)
    mask[torch.from_numpy(rows), torch.from_numpy(cols.astype(np.int64))] = True
    return mask


def best_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(rows, min(k, items)) item indices of each row's k best scores, equal scores in item order
    (the lower index first): a full stable sort's first k, at topk's cost. A full sort of 10,000
    users × 27,000 items took 14 s here; rows whose k-th score ties with one past the list (or
    with -inf, seen items) are still sorted fully, only they."""
    k = min(k, scores.shape[1])
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    tied = (scores >= kth).sum(1) > k
    order = torch.empty((len(scores), k), dtype=torch.int64)
    if (~tied).any():
        clear = scores[~tied]
        candidates = torch.nonzero(clear >= kth[~tied])[:, 1].reshape(-1, k)  # each row's k, in item order
        ranked = torch.sort(torch.gather(clear, 1, candidates), dim=1, descending=True, stable=True).indices
        order[~tied] = torch.gather(candidates, 1, ranked)
    if tied.any():
        order[tied] = torch.sort(scores[tied], dim=1, descending=True, stable=True).indices[:, :k]
    return order


def top_k(scores_of: Callable[[np.ndarray], torch.Tensor], users: np.ndarray, seen: tuple[np.ndarray, np.ndarray],
          n_items: int, k: int, batch: int | None = None) -> np.ndarray:
    """(users, k) item indices, the best first; -1 where a user has fewer than k unseen items.
    `scores_of(users)` gives (len(users), n_items) scores; `seen` is the CSR (indptr, indices)
    of every user's seen items."""
    return top_k_scored(scores_of, users, seen, n_items, k, batch)[0]


def top_k_scored(scores_of: Callable[[np.ndarray], torch.Tensor], users: np.ndarray,
                 seen: tuple[np.ndarray, np.ndarray], n_items: int, k: int,
                 batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`top_k`'s lists and their scores (NaN where the list is padded with -1)."""
    batch = batch or min(USER_BATCH, max(1, SCORE_CELLS // max(n_items, 1)))
    found = np.full((len(users), k), -1, dtype=np.int64)
    values = np.full((len(users), k), np.nan)
    for start in range(0, len(users), batch):
        part = users[start:start + batch]
        scores = scores_of(part).float().clone()
        hidden = seen_mask(seen[0], seen[1], part, n_items)
        scores[hidden] = -torch.inf
        order = best_k(scores, k)
        picked = torch.gather(scores, 1, order)
        kept = picked > -torch.inf
        found[start:start + len(part), :order.shape[1]] = torch.where(kept, order, -1).numpy()
        values[start:start + len(part), :order.shape[1]] = torch.where(kept, picked, torch.nan).numpy()
    return found, values


def ranking_metrics(recommended: np.ndarray, held_out: list[np.ndarray], n_items: int) -> dict:
    """HR, recall, NDCG and MAP at k (the lists' length) with their standard errors, coverage,
    and how many users were scored (those with a held-out item)."""
    k = recommended.shape[1]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    per_user = {"hr": [], "recall": [], "ndcg": [], "map": []}
    for ranked, relevant in zip(recommended, held_out):
        relevant = np.unique(relevant)
        if not len(relevant):
            continue
        hits = np.isin(ranked, relevant) & (ranked >= 0)
        ideal = discount[:min(len(relevant), k)].sum()
        precision_at = np.cumsum(hits) / np.arange(1, k + 1)
        per_user["hr"].append(float(hits.any()))
        per_user["recall"].append(hits.sum() / len(relevant))
        per_user["ndcg"].append((discount * hits).sum() / ideal)
        per_user["map"].append((precision_at * hits).sum() / min(len(relevant), k))
    scored = len(per_user["hr"])
    result = {"k": k, "users_scored": scored, "users_without_held_out": len(held_out) - scored,
              "coverage": float(len(np.unique(recommended[recommended >= 0])) / n_items) if n_items else 0.0}
    for name, values in per_user.items():
        values = np.asarray(values, dtype=np.float64)
        result[f"{name}@{k}"] = float(values.mean()) if scored else 0.0
        result[f"{name}@{k}_se"] = float(values.std(ddof=1) / np.sqrt(scored)) if scored > 1 else 0.0
    return result


def sampled_metrics(scores_of: Callable[[np.ndarray], torch.Tensor], users: np.ndarray,
                    seen: tuple[np.ndarray, np.ndarray], held_out: list[np.ndarray], n_items: int,
                    negatives: int = 100, k: int = 10, seed: int = 0) -> dict:
    """HR@k and NDCG@k as sampled evaluation computes them — each held-out item ranked among
    `negatives` items drawn from those the user has not seen — for showing beside the full
    ranking how much sampling flatters a model, never instead of it. A tie counts against
    the held-out item."""
    rng = np.random.default_rng(seed)
    hits, gains = [], []
    for start in range(0, len(users), USER_BATCH):
        part = users[start:start + USER_BATCH]
        scores = scores_of(part).float()
        hidden = seen_mask(seen[0], seen[1], part, n_items).numpy()
        for row, user in enumerate(part):
            relevant = np.unique(held_out[user])
            if not len(relevant):
                continue
            pool = np.flatnonzero(~hidden[row] & ~np.isin(np.arange(n_items), relevant))
            drawn = torch.from_numpy(rng.choice(pool, min(negatives, len(pool)), replace=False))
            ranks = (scores[row, drawn][None, :] >= scores[row, torch.from_numpy(relevant)][:, None]).sum(1).numpy()
            hits.append(float(np.mean(ranks < k)))
            gains.append(float(np.mean(np.where(ranks < k, 1 / np.log2(ranks + 2), 0.0))))
    return {f"hr@{k}": float(np.mean(hits)) if hits else 0.0, f"ndcg@{k}": float(np.mean(gains)) if gains else 0.0,
            "negatives": negatives, "users_scored": len(hits)}
