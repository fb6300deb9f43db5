"""Recommendation's first slice (issue 34): full-ranking top-k lists with seen items excluded,
the ranking metrics against a hand computation, leave-last-out splits, and EASE and popularity
on a planted structure."""
import math

import numpy as np
import pytest
import torch

from scaletrain.data.split import leave_last_out
from scaletrain.evaluate.ranking import ranking_metrics, top_k
from scaletrain.models.ease import ease_weights, popularity


def csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.cumsum([0] + [len(r) for r in rows]), np.asarray([i for r in rows for i in r], dtype=np.int64)


def test_metrics_equal_a_hand_computation():
    recommended = np.array([[3, 1, 4], [0, 2, 1], [4, 0, -1]])
    held_out = [np.array([1, 4]), np.array([]), np.array([9])]  # the second user has none: counted, not scored
    m = ranking_metrics(recommended, held_out, n_items=10)
    assert m["users_scored"] == 2 and m["users_without_held_out"] == 1
    d = [1.0, 1 / math.log2(3), 1 / math.log2(4)]
    ndcg_first = (d[1] + d[2]) / (d[0] + d[1])  # hits at ranks 2 and 3 of 2 possible
    ap_first = (1 / 2 + 2 / 3) / 2             # precision at each hit, over min(2, k)
    assert m["hr@3"] == pytest.approx(0.5) and m["recall@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx(ndcg_first / 2) and m["map@3"] == pytest.approx(ap_first / 2)
    assert m["coverage"] == pytest.approx(5 / 10)  # items 0-4 appear; the -1 slot is no item
    assert m["hr@3_se"] == pytest.approx(np.std([1.0, 0.0], ddof=1) / math.sqrt(2))


def test_top_k_never_recommends_seen_items_and_breaks_ties_by_the_lower_index():
    scores = torch.tensor([[5.0, 5.0, 1.0, 5.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    seen = csr([[0], [4, 3, 2, 1], []])
    lists = top_k(lambda users: scores[torch.from_numpy(users)], np.arange(3), seen, 5, k=3)
    assert lists.tolist() == [[1, 3, 2], [0, -1, -1], [0, 1, 2]]  # ties in item order; too few unseen: -1
    one_by_one = top_k(lambda users: scores[torch.from_numpy(users)], np.arange(3), seen, 5, k=3, batch=1)
    assert (one_by_one == lists).all()  # users scored a batch at a time give the same lists


def test_leave_last_out_holds_each_users_latest_interaction():
    users = np.array([0, 0, 0, 1, 1, 2])
    times = np.array([5, 9, 1, 3, 3, 7])  # user 1's two rows tie: the later row is held
    kept, held = leave_last_out(users, times, seed=0)
    assert held.tolist() == [1, 4] and kept.tolist() == [0, 2, 3, 5]  # user 2's single row stays in training
    kept_random, held_random = leave_last_out(users, None, seed=0)
    assert len(held_random) == 2 and sorted(users[held_random]) == [0, 1]
    assert (leave_last_out(users, None, seed=0)[1] == held_random).all()  # seeded


def test_ease_recovers_a_planted_structure_and_beats_popularity():
    """Users who take item 2k also take item 2k + 1; items 0 and 1 are the most popular. A user
    who saw only item 6 should get item 7 first from EASE, item 0 from popularity."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(300):
        pair = int(rng.integers(0, 10))
        rows.append(sorted({2 * pair, 2 * pair + 1, int(rng.integers(0, 2))}))
    rows.append([6])
    indptr, indices = csr(rows)
    weights = ease_weights(indptr, indices, 20, l2=10.0)
    assert torch.allclose(torch.diagonal(weights), torch.zeros(20))
    user = np.array([len(rows) - 1])
    seen_row = torch.zeros((1, 20))
    seen_row[0, 6] = 1.0
    assert top_k(lambda users: seen_row @ weights, user, (indptr, indices), 20, k=1)[0, 0] == 7
    assert top_k(lambda users: popularity(indices, 20)[None], user, (indptr, indices), 20, k=1)[0, 0] in (0, 1)


def test_bpr_factorization_learns_the_planted_pairs():
    """The same planted pairs: 300 users take both items of a pair; for 100 more, one item of
    their pair is held out, and the factorization ranks it far above where popularity puts it."""
    from scaletrain.models.factorization import BprShape, fit_bpr

    rng = np.random.default_rng(1)
    rows, held = [], []
    for user in range(400):
        pair = int(rng.integers(0, 10))
        first, second = (int(i) for i in rng.permutation([2 * pair, 2 * pair + 1]))
        popular = int(rng.integers(0, 2))
        rows.append(sorted({first, second, popular} if user < 300 else {first, popular} - {second}))
        held.append(np.array([], int) if user < 300 or second == popular else np.array([second]))
    indptr, indices = csr(rows)
    model = fit_bpr(indptr, indices, 20, BprShape(dim=8, epochs=40, batch=64))
    with torch.no_grad():
        lists = top_k(lambda users: model(torch.from_numpy(users)), np.arange(len(rows)), (indptr, indices), 20, k=2)
    popular = top_k(lambda users: popularity(indices, 20)[None].expand(len(users), -1), np.arange(len(rows)),
                    (indptr, indices), 20, k=2)
    assert ranking_metrics(lists, held, 20)["hr@2"] > 0.8
    assert ranking_metrics(popular, held, 20)["hr@2"] < 0.4


def test_sampled_figures_rank_the_held_out_item_among_drawn_unseen_items():
    from scaletrain.evaluate.ranking import sampled_metrics

    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    seen = csr([[0], []])
    held = [np.array([2]), np.array([4])]  # user 0: item 1 (unseen) outscores it; user 1: a tie counts against it
    found = sampled_metrics(lambda users: scores[torch.from_numpy(users)], np.arange(2), seen, held, 5, k=2)
    assert found["hr@2"] == pytest.approx(0.5) and found["ndcg@2"] == pytest.approx(0.5 / math.log2(3))
    assert found["users_scored"] == 2


def test_best_k_is_a_stable_sorts_first_k_ties_and_seen_items_included():
    from scaletrain.evaluate.ranking import best_k

    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        rows, items, k = (int(torch.randint(1, n, (1,), generator=g)) for n in (20, 40, 12))
        scores = torch.randint(0, 5, (rows, items), generator=g).float()  # many ties
        scores[torch.rand(rows, items, generator=g) < 0.2] = -torch.inf
        expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        assert torch.equal(best_k(scores, k), expected)
