"""`scaletrain train ratings.csv --task recommend`: interactions in, a recommender run out.

The split users trust: each user's last interaction by time is the test item (leave-last-out;
without a time column, a random `data.test_fraction` of each user's items), and validation
is cut the same way from the rest. Every candidate is scored over the whole catalogue with
the user's seen items excluded — no sampled negatives, which flatter every model. The
candidate with the best validation NDCG@10 is chosen (popularity first among equals: a model
must beat it to be chosen); the best of each kind is refitted on training + validation and
scored on the test items, popularity always among them; the chosen one is then refitted on
every interaction, the model `predict` and `serve` use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.config import Config
from scaletrain.data.split import leave_last_out, random_per_user
from scaletrain.errors import DataError
from scaletrain.evaluate.ranking import ranking_metrics, sampled_metrics
from scaletrain.modalities.table.tables import read_table
from scaletrain.models.factorization import folding_note
from scaletrain.models.graph_filter import graph_filter_weights
from scaletrain.recommend.interactions import Interactions, history, interactions_from, read_interactions
from scaletrain.recommend.log_stream import is_streamed
from scaletrain.recommend.ranks import ranks_here
from scaletrain.recommend.recommender import Recommender
from scaletrain.recommend.scorers import Scorer, candidate_specs, fit_scorer, scorer_of, with_graph
from scaletrain.recommend.sides import Sides, read_side
from scaletrain.recommend.stream_fit import fit_streamed

K = 10                 # the cut-off of the headline metrics (NDCG@10, HR@10)
VAL_USERS = 10_000     # validation scores at most this many users (a seeded sample): bounded time
HEADLINE = f"ndcg@{K}"


@dataclass
class Part:
    """Interactions to learn from (rows of the whole table) and the items held out per user."""

    rows: np.ndarray
    held: list[np.ndarray]


def held_out(found: Interactions, rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) rows: the last by time per user, or a random share of each user's rows."""
    if found.times is not None:
        kept, held = leave_last_out(found.users[rows], found.times[rows], seed)
    else:
        kept, held = random_per_user(found.users[rows], fraction, seed)
    return rows[kept], rows[held]


def part_of(found: Interactions, kept: np.ndarray, held: np.ndarray) -> Part:
    by_user = pd.Series(found.items[held]).groupby(found.users[held]).agg(list)
    lists = [np.zeros(0, np.int64)] * found.n_users
    for user, items in by_user.items():
        lists[int(user)] = np.asarray(items, dtype=np.int64)
    return Part(kept, lists)


def recommender_on(found: Interactions, rows: np.ndarray, scorer: Scorer) -> Recommender:
    indptr, indices = history(found.users[rows], found.items[rows], None if found.times is None else found.times[rows],
                              found.n_users)
    return Recommender(scorer, indptr, indices, found.user_ids, found.item_ids)


def score(found: Interactions, part: Part, scorer: Scorer, users: np.ndarray) -> dict:
    """Ranking metrics at K of `scorer` (fitted on part.rows) for `users`' held-out items."""
    lists, _ = recommender_on(found, part.rows, scorer).top(users, K)
    return ranking_metrics(lists, [part.held[u] for u in users], found.n_items)


class Fitter:
    """Fits specs on one part's rows, reusing EASE's weights across recencies (they only weigh its
    input) and across graph-filter shares (models/graph_filter.py: one filter, blended at each);
    a trained spec keeps its checkpoints in CHECKPOINTS/<stage>-<its settings>/."""

    def __init__(self, found: Interactions, rows: np.ndarray, seed: int, checkpoints: Path | None = None,
                 stage: str = "", sides: Sides = Sides()):
        self.found, self.rows, self.seed, self.fitted = found, rows, seed, {}
        self.checkpoints, self.stage, self.sides = checkpoints, stage, sides
        times = None if found.times is None else found.times[rows]
        self.indptr, self.indices = history(found.users[rows], found.items[rows], times, found.n_users)

    def __call__(self, spec: dict) -> Scorer:
        ease = spec["model"] == "ease"
        key = tuple(sorted((k, v) for k, v in spec.items() if not (ease and k in ("recency", "graph"))))
        if key not in self.fitted:
            settings = [f"{k}{v:g}" for k, v in key if k != "model"]
            folder = None if self.checkpoints is None else self.checkpoints / "-".join([self.stage, spec["model"], *settings])
            self.fitted[key] = fit_scorer({k: v for k, v in spec.items() if k != "graph"}, self.indptr, self.indices,
                                          self.found.n_items, self.seed, folder, ranks_here(), self.sides).weights
        weights = self.fitted[key]
        if ease and spec.get("graph"):
            if "graph filter" not in self.fitted:
                self.fitted["graph filter"] = graph_filter_weights(self.indptr, self.indices, self.found.n_items)
            blended = (*key, ("graph", spec["graph"]))
            if blended not in self.fitted:
                self.fitted[blended] = with_graph(weights, spec, self.indptr, self.indices, self.found.n_items,
                                                  self.fitted["graph filter"])
            weights = self.fitted[blended]
        return scorer_of(spec, weights)


def users_with_items(part: Part, limit: int, seed: int) -> np.ndarray:
    users = np.flatnonzero([len(h) > 0 for h in part.held])
    if len(users) > limit:
        users = np.sort(np.random.default_rng(seed).choice(users, limit, replace=False))
    return users


def choose(found: Interactions, cfg: Config, train_rows: np.ndarray, progress, checkpoints: Path | None,
           sides: Sides) -> tuple[dict, list[dict]]:
    """The spec with the best validation NDCG@K, and every candidate's validation figures."""
    d, m, seed = cfg.data, cfg.model, cfg.train.seed
    specs = candidate_specs(m.name, m.ease_l2, m.recency, found.n_items, bool(sides))
    inner, val = held_out(found, train_rows, d.val_fraction, seed + 1)
    part = part_of(found, inner, val)
    users = users_with_items(part, VAL_USERS, seed)
    if not len(users):
        raise DataError("no user has two interactions: nothing is left to validate or test a recommender on; "
                        "give each user's history (several rows per user)")
    fit, board = Fitter(found, inner, seed, checkpoints, "validation", sides), []
    for done, spec in enumerate(specs, start=1):
        started = time.perf_counter()
        scorer = fit(spec)
        board.append({"name": scorer.name, "spec": spec, "val": score(found, part, scorer, users),
                      "seconds": round(time.perf_counter() - started, 3)})
        progress(done, len(specs), scorer.name, board[-1]["val"][HEADLINE])
    best = max(range(len(board)), key=lambda i: (board[i]["val"][HEADLINE], -i))
    return board[best]["spec"], board


def test_figures(found: Interactions, cfg: Config, part: Part, chosen: dict, board: list[dict],
                 checkpoints: Path | None, sides: Sides) -> tuple[dict[str, dict], dict]:
    """Test metrics of the chosen spec and of the best of every other kind (popularity too),
    each refitted on training + validation; and the chosen one's sampled figures beside them."""
    best_of = {}
    def kind(spec: dict) -> tuple:  # EASE with and without recency, with and without the graph filter apart
        return spec["model"], bool(spec.get("recency")), bool(spec.get("graph"))

    for entry in sorted(board, key=lambda e: -e["val"][HEADLINE]):
        best_of.setdefault(kind(entry["spec"]), entry["spec"])
    best_of[kind(chosen)] = chosen
    users = np.flatnonzero([len(h) > 0 for h in part.held])
    fit = Fitter(found, part.rows, cfg.train.seed, checkpoints, "test", sides)
    figures = {scorer.name: score(found, part, scorer, users) for scorer in map(fit, best_of.values())}
    return figures, sampled_figures(found, part, fit(chosen))


def sampled_figures(found: Interactions, part: Part, scorer: Scorer) -> dict:
    """The chosen model's test figures as sampled evaluation gives them (100 drawn negatives),
    labelled: the gap to the full ranking is what sampling flatters."""
    model = recommender_on(found, part.rows, scorer)
    users = users_with_items(part, VAL_USERS, 0)
    return sampled_metrics(model.scores, users, (model.indptr, model.indices), part.held, found.n_items) | {
        "what": "each test item ranked among 100 unseen items drawn at random; NOT the full ranking the test "
                "figures are, only beside them: how much sampled evaluation flatters"}


def split_name(found: Interactions, cfg: Config) -> str:
    if found.times is not None:
        return f"leave-last-out by '{found.roles['time']}' (each user's latest item is the test item, the one before it validation)"
    return (f"random per user ({cfg.data.test_fraction:.0%} of each user's items for test, "
            f"{cfg.data.val_fraction:.0%} of the rest for validation; no time column)")


def read_sides(found: Interactions, cfg: Config) -> Sides:
    """The side tables `--items` and `--users` name; their new items and users join the run's."""
    items = users = None
    if cfg.data.items:
        items, found.item_ids, notes = read_side(read_table(cfg.data.items), found.item_ids, found.roles["item"],
                                                 "item", cfg.data.items)
        found.notes += notes
    if cfg.data.users:
        users, found.user_ids, notes = read_side(read_table(cfg.data.users), found.user_ids, found.roles["user"],
                                                 "user", cfg.data.users)
        found.notes += notes
    return Sides(items, users)


def fit_recommender(cfg: Config, data, where: str, progress=lambda done, total, name, value: None,
                    checkpoints: Path | None = None, folder: Path | None = None) -> tuple[Recommender, dict]:
    """The fitted recommender (on every interaction) and its metrics.json content; trained
    candidates keep their state under `checkpoints` and continue from it. Shards of more than
    STREAM_ROWS interactions are streamed (stream_fit.py), their histories written into `folder`."""
    if is_streamed(data):
        return fit_streamed(cfg, str(data), progress, checkpoints, folder)
    started = time.perf_counter()
    frame, read_notes = (data, []) if isinstance(data, pd.DataFrame) else read_interactions(data, cfg.data)
    found = interactions_from(frame, cfg.data, where)
    found.notes[:0] = read_notes
    sides = read_sides(found, cfg)
    train_rows, test_rows = held_out(found, np.arange(len(found.users)), cfg.data.test_fraction, cfg.train.seed)
    chosen, board = choose(found, cfg, train_rows, progress, checkpoints, sides)
    test, sampled = test_figures(found, cfg, part_of(found, train_rows, test_rows), chosen, board, checkpoints, sides)
    shipped = Fitter(found, np.arange(len(found.users)), cfg.train.seed, checkpoints, "all", sides)(chosen)
    recommender = recommender_on(found, np.arange(len(found.users)), shipped)
    folded = folding_note(found.n_users) if chosen["model"] == "mf" else []
    notes = found.notes + folded + [f"chosen: {shipped.name}, the best validation NDCG@{K} of {len(board)} candidates; refitted "
                           "on every interaction for predict and serve (the test figures are of the fit without them)"]
    metrics = {"task": "recommend", "model": shipped.name, "spec": chosen, "k": K, "headline": HEADLINE,
               "data": {"interactions": int(len(found.users)), "users": found.n_users, "items": found.n_items,
                        "roles": found.roles, "split": split_name(found, cfg)},
               "val": next(e["val"] for e in board if e["spec"] == chosen), "test": test[shipped.name],
               "test_sampled": sampled,
               "baselines": {name: figures for name, figures in test.items() if name != shipped.name},
               "candidates": board, "parameters": int(sum(w.numel() for w in shipped.weights.values())),
               "train_seconds": round(time.perf_counter() - started, 2), "notes": notes}
    return recommender, metrics
