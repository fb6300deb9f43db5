"""GF-CF's graph filter and its blend into EASE's weights (models/graph_filter.py)."""
import numpy as np
import torch

from scaletrain.models.ease import ease_weights, interaction_matrix
from scaletrain.models.graph_filter import blend_item_weights, graph_filter_weights
from scaletrain.recommend.scorers import candidate_specs, fit_scorer

USERS, ITEMS, BLOCK = 120, 24, 8


def blocks(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CSR histories: user u takes 5 of the 8 items of block u % 3, and one item at random."""
    rng = np.random.default_rng(seed)
    rows = [np.unique(np.r_[rng.choice(BLOCK, 5, replace=False) + BLOCK * (u % 3), rng.integers(ITEMS)])
            for u in range(USERS)]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    return indptr, np.concatenate(rows)


def test_the_graph_filter_links_items_that_the_same_users_take():
    indptr, indices = blocks()
    weights = graph_filter_weights(indptr, indices, ITEMS)
    same = np.kron(np.eye(3), np.ones((BLOCK, BLOCK))).astype(bool)
    np.fill_diagonal(same, False)
    assert weights.shape == (ITEMS, ITEMS) and torch.all(torch.diagonal(weights) == 0)
    within, across = weights.numpy()[same].mean(), np.abs(weights.numpy()[~same]).mean()
    assert within > 4 * across, (within, across)
    assert torch.equal(weights, graph_filter_weights(indptr, indices, ITEMS))  # seeded: a refit is the same


def test_the_blend_puts_both_weights_on_one_scale():
    indptr, indices = blocks()
    x = interaction_matrix(indptr, indices, ITEMS)
    ease, graph = ease_weights(indptr, indices, ITEMS, 10.0), graph_filter_weights(indptr, indices, ITEMS)
    blended = blend_item_weights(ease, graph, 0.5, x)
    assert torch.allclose(blend_item_weights(1000 * ease, graph / 7, 0.5, x), blended, atol=1e-5)
    alone = blend_item_weights(ease, graph, 0.0, x)
    scores_alone, scores_ease = (torch.from_numpy(x.toarray()).float() @ w for w in (alone, ease))
    assert torch.equal(scores_alone.argsort(1), scores_ease.argsort(1))  # share 0: EASE's ranking, rescaled
    assert not torch.allclose(blended, alone)


def test_zero_config_compares_ease_with_and_without_the_graph_filter():
    specs = candidate_specs("auto", None, None, ITEMS)
    assert {s.get("graph") for s in specs if s["model"] == "ease"} == {0.0, 0.5}
    indptr, indices = blocks()
    plain = fit_scorer({"model": "ease", "l2": 10.0}, indptr, indices, ITEMS, 0)
    older = fit_scorer({"model": "ease", "l2": 10.0, "graph": 0.0}, indptr, indices, ITEMS, 0)
    mixed = fit_scorer({"model": "ease", "l2": 10.0, "graph": 0.5}, indptr, indices, ITEMS, 0)
    assert torch.equal(plain.weights["ease"], older.weights["ease"])  # runs written before the filter load alike
    assert not torch.allclose(plain.weights["ease"], mixed.weights["ease"])
    assert mixed.name == "ease (l2=10, graph=0.5)"
