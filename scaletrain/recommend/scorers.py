"""The recommenders zero-config chooses between, behind one interface: fitted from the users'
histories (CSR rows, oldest first), they score the whole catalogue for a batch of users from
those users' history weights (batch, items) and indices. Each one's weights and shape go into
the run directory as safetensors and JSON, and each can say which past items support an
item it recommends.

- popularity: each item's count of users, the baseline every recommender must beat;
- ease: EASE's item-item weights (models/ease.py) over the user's history, weighted by
  recency (interactions.recency_weights), with GF-CF's graph filter (models/graph_filter.py)
  blended in at the share `graph`;
- mf: matrix factorization trained with BPR (models/factorization.py);
- twotower: item vectors from ids and features, users as their items' mean (models/two_tower.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scaletrain.errors import ConfigError
from scaletrain.models.ease import ease_weights, interaction_matrix, popularity
from scaletrain.models.factorization import BprShape, Ranks, fit_bpr
from scaletrain.models.graph_filter import blend_item_weights, graph_filter_weights
from scaletrain.models.two_tower import fit_two_tower
from scaletrain.recommend.sides import Sides

EASE_MAX_ITEMS = 15_000  # its float64 inverse of items × items: 1.8 GB at 15,000 items
EASE_L2 = (100.0, 500.0, 2000.0)   # Steck's 500 and a step either side (the validation users choose)
HALF_LIVES = (0.0, 2.0, 7.0, 20.0)  # recency half-lives in interactions; 0: every past item alike
GRAPH_SHARES = (0.0, 0.5)  # GF-CF's share in EASE's weights (0.35–0.5 measured alike on MovieLens)
MF_DIM, MF_EPOCHS = 64, 30


@dataclass
class Scorer:
    """Popularity: every user gets the catalogue by its count of users."""

    spec: dict                      # {"model": ..., and its settings}: JSON in the run directory
    weights: dict[str, torch.Tensor]

    @property
    def name(self) -> str:
        settings = ", ".join(f"{k}={v:g}" for k, v in self.spec.items() if k != "model")
        return f"{self.spec['model']}" + (f" ({settings})" if settings else "")

    @property
    def half_life(self) -> float:
        return float(self.spec.get("recency", 0.0))

    def scores(self, history: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """(batch, items) scores from history weights (batch, items) and user indices (-1: a
        user the model did not train on, whom only the history describes)."""
        return self.weights["popularity"].expand(len(history), -1)

    def support(self, history: torch.Tensor, item: int) -> torch.Tensor:
        """(items,) how much each past item (the history's nonzero weights) adds to `item`'s score."""
        return torch.zeros_like(history)

    @property
    def knows_users_by_features(self) -> bool:
        """Whether a known user with no history is scored by the model (else given popular items)."""
        return False


class EaseScorer(Scorer):
    def scores(self, history, users):
        return history @ self.weights["ease"]

    def support(self, history, item):
        return history * self.weights["ease"][:, item]


class FactorScorer(Scorer):
    def scores(self, history, users):
        table = self.weights["users"]  # fewer rows than users: folded (models/factorization.USER_ROWS)
        vectors = table[users.clamp(min=0) % len(table)] * (users >= 0)[:, None]
        return vectors @ self.weights["items"].T + self.weights["bias"]

    def support(self, history, item):
        # no item-item weights: the past items whose vectors point the same way as the item's
        vectors = torch.nn.functional.normalize(self.weights["items"], dim=1)
        return (history > 0) * (vectors @ vectors[item])


class TowerScorer(Scorer):
    """Two towers: the user is the weighted mean of their items' vectors (models/two_tower.py)."""

    def scores(self, history, users):
        items = self.weights["items"]
        vectors = (history @ items) / history.sum(1, keepdim=True).clamp(min=1e-6)
        if self.knows_users_by_features:  # the user's own features' vector (none for an unknown user)
            vectors = vectors + self.weights["users_side"][users.clamp(min=0)] * (users >= 0)[:, None]
        return vectors @ items.T + self.weights["bias"]

    @property
    def knows_users_by_features(self) -> bool:
        return "users_side" in self.weights

    def support(self, history, item):
        items = self.weights["items"]
        return history * (items @ items[item]) / history.sum().clamp(min=1e-6)


SCORERS = {"popularity": Scorer, "ease": EaseScorer, "mf": FactorScorer, "twotower": TowerScorer}
TWO_TOWER = {"model": "twotower", "dim": 64, "epochs": 10, "recency": 7.0}


def scorer_of(spec: dict, weights: dict[str, torch.Tensor]) -> Scorer:
    return SCORERS[spec["model"]](spec, weights)


def fit_scorer(spec: dict, indptr: np.ndarray, indices: np.ndarray, n_items: int, seed: int,
               checkpoints: Path | None = None, ranks: Ranks = Ranks(), sides: Sides = Sides()) -> Scorer:
    """A scorer of `spec` fitted on the histories (CSR rows indptr/indices); a trained one keeps
    its state in `checkpoints` and continues from it (models/factorization.fit_bpr)."""
    model = spec["model"]
    weights = {"popularity": popularity(indices, n_items)}
    if model == "ease":
        weights["ease"] = ease_weights(indptr, indices, n_items, spec["l2"])
        weights = with_graph(weights, spec, indptr, indices, n_items)
    elif model == "mf":
        factors = fit_bpr(indptr, indices, n_items, BprShape(spec["dim"], spec["epochs"], seed=seed), checkpoints, ranks)
        weights |= {"users": factors.users.weight.detach(), "items": factors.items.weight.detach(),
                    "bias": factors.bias.detach()}
        quiet_unseen(weights)
    elif model == "twotower":
        trained = zip(("items", "bias", "users_side"), _two_tower(spec, indptr, indices, n_items, seed, sides))
        weights |= {name: tensor for name, tensor in trained if tensor is not None}
    elif model != "popularity":
        raise ConfigError(f"unknown recommender '{model}'; one of: {', '.join(SCORERS)}")
    return scorer_of(spec, weights)


def with_graph(weights: dict[str, torch.Tensor], spec: dict, indptr: np.ndarray, indices: np.ndarray, n_items: int,
               graph: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """EASE's weights with GF-CF's (`graph`, if already fitted on these histories) blended in at
    the spec's share `graph`; unchanged where it is 0 or absent (runs written before it)."""
    share = float(spec.get("graph", 0.0))
    if not share:
        return weights
    graph = graph_filter_weights(indptr, indices, n_items) if graph is None else graph
    blended = blend_item_weights(weights["ease"], graph, share, interaction_matrix(indptr, indices, n_items))
    return weights | {"ease": blended}


def quiet_unseen(weights: dict[str, torch.Tensor]) -> None:
    """Items never drawn as a positive in training keep their random vectors, noise: zero them and
    give them the lowest bias, so they rank last among the catalogue."""
    unseen = weights["popularity"] == 0
    weights["items"][unseen], weights["bias"][unseen] = 0.0, weights["bias"][~unseen].min() if (~unseen).any() else 0


def _two_tower(spec: dict, indptr: np.ndarray, indices: np.ndarray, n_items: int, seed: int,
               sides: Sides) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    from scipy.sparse import csr_matrix

    from scaletrain.recommend.interactions import recency_weights

    matrix = csr_matrix((recency_weights(indptr, spec["recency"]), indices, indptr), shape=(len(indptr) - 1, n_items))
    side = sides.items
    features = (side.tokens, side.offsets, side.numbers) if side is not None else (
        torch.zeros(0, dtype=torch.int64), torch.zeros(n_items + 1, dtype=torch.int64), torch.zeros((n_items, 0)))
    return fit_two_tower(matrix, features, n_items, spec["dim"], spec["epochs"], seed, sides.users)


def candidate_specs(name: str, l2: float | None, half_life: float | None, n_items: int,
                    side: bool = False) -> list[dict]:
    """The settings zero-config compares (popularity always among them; the two towers where
    items or users have features), or those model.name and the model's keys fix."""
    popular = [{"model": "popularity"}]
    ease = [{"model": "ease", "l2": float(a), "recency": float(h), "graph": g} for a in ([l2] if l2 else EASE_L2)
            for h in ([half_life] if half_life is not None else HALF_LIVES) for g in GRAPH_SHARES]
    mf = [{"model": "mf", "dim": MF_DIM, "epochs": MF_EPOCHS}]
    if name == "ease" and n_items > EASE_MAX_ITEMS:
        raise ConfigError(f"EASE holds an items × items matrix: {n_items:,} items are over its limit of "
                          f"{EASE_MAX_ITEMS:,}; use model.name=mf")
    if n_items > EASE_MAX_ITEMS:
        ease = []
    towers = [TWO_TOWER | ({"recency": float(half_life)} if half_life is not None else {})]
    by_name = {"popularity": popular, "ease": popular + ease, "mf": popular + mf, "twotower": popular + towers,
               "auto": popular + ease + mf + (towers if side else [])}
    if name not in by_name:
        raise ConfigError(f"model.name={name} does not recommend; use auto, popularity, ease, mf or twotower")
    return by_name[name]
