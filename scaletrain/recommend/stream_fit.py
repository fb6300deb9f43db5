"""`train SHARDS --task recommend` on a log too big to hold (more than STREAM_ROWS interactions):
matrix factorization trained by BPR over the streamed log, with memory that follows the
number of users and items, not of interactions.

The split: a seeded sample of users (EVAL_USERS for validation, as many for test, each with two
interactions or more) has its latest item held out — the time column's latest, or the log's
last without one — and every other row trains. Held-out items are ranked over the whole
catalogue with the user's other items excluded, as in memory (fit.py); popularity is scored on
the same users. One model is trained (no refit on everything: the held-out items are 2 ×
EVAL_USERS of many millions) and shipped if its validation NDCG@10 beats popularity's.
The users' histories go to the run directory a block at a time (histories.py).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from scaletrain.config import Config
from scaletrain.errors import ConfigError, DataError
from scaletrain.evaluate.ranking import ranking_metrics
from scaletrain.models.factorization import BprShape, fit_bpr_streamed, folding_note
from scaletrain.recommend.histories import FILE, open_histories, write_histories
from scaletrain.recommend.log_stream import LogStream
from scaletrain.recommend.ranks import ranks_here
from scaletrain.recommend.recommender import Recommender
from scaletrain.recommend.scorers import MF_DIM, FactorScorer, Scorer, quiet_unseen

EVAL_USERS = 10_000    # validation users, and as many test users (a seeded sample)
EVAL_ROWS = 1_000_000  # and at most this many of each sample's interactions
STREAM_EPOCHS = 2      # passes over the log (each one ~25 s per 10 M interactions here)
STREAM_BATCH = 8_192   # pairs a step: SparseAdam's cost is per touched row, so larger batches pay
K = 10
STREAMED_MODELS = ("auto", "mf", "popularity")  # EASE needs every user's row at once, the two towers too


def held_out_users(log: LogStream, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation users, test users): disjoint seeded samples of users with two items or more,
    each of at most EVAL_USERS users and EVAL_ROWS of their interactions (their seen items are
    held for the evaluation: a budget that does not grow with the log)."""
    eligible = np.flatnonzero(log.user_counts >= 2)
    if not len(eligible):
        raise DataError(f"'{log.url}': no user has two interactions; nothing is left to validate or test on")
    picked = np.random.default_rng(seed).permutation(eligible)[:2 * EVAL_USERS]
    halves = picked[:len(picked) // 2], picked[len(picked) // 2:]
    return tuple(np.sort(users[:max(1, int(np.searchsorted(np.cumsum(log.user_counts[users]), EVAL_ROWS, "right")))])
                 for users in halves)


def other_items(log: LogStream, users: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR rows (over every user, only `users`' filled) of those users' items other than their
    held-out one: the seen items their evaluation excludes. One pass; as big as the sample."""
    wanted = np.zeros(len(log.user_ids), bool)
    wanted[users] = True
    parts = []
    for frame in log.frames():
        u, i = log.indices(frame)
        keep = wanted[u] & (u * len(log.item_ids) + i != held[u])
        parts.append((u[keep].astype(np.int32), i[keep].astype(np.int32)))
    u, i = (np.concatenate(c) for c in zip(*parts)) if parts else (np.zeros(0, np.int64),) * 2
    order = np.argsort(u, kind="stable")
    return np.searchsorted(u[order], np.arange(len(log.user_ids) + 1)).astype(np.int64), i[order]


class Evaluation:
    """Ranking metrics at K of a scorer on held-out items of sampled users."""

    def __init__(self, log: LogStream, users: np.ndarray, held_key: np.ndarray):
        self.log, self.users = log, users
        self.seen = other_items(log, users, held_key)
        self.held = [np.array([log.latest_item[u]]) for u in users]

    def __call__(self, scorer: Scorer) -> dict:
        model = Recommender(scorer, *self.seen, self.log.user_ids, self.log.item_ids)
        lists, _ = model.top(self.users, K)
        return ranking_metrics(lists, self.held, len(self.log.item_ids))


def fit_streamed(cfg: Config, url: str, progress, checkpoints: Path | None, folder: Path | None) -> tuple[Recommender, dict]:
    """The recommender trained on the streamed shards at `url`, its histories written into
    `folder` (the run directory; None: a temporary one), and its metrics.json content."""
    from scaletrain.data.manifest import read_manifest, verify_shards

    if cfg.model.name not in STREAMED_MODELS:
        raise ConfigError(f"model.name={cfg.model.name}: '{url}' is streamed, and a streamed log trains "
                          f"{' or '.join(STREAMED_MODELS[1:])} (auto: both, the better on validation)")
    for flag, given in (("items", cfg.data.items), ("users", cfg.data.users)):
        if given:
            raise ConfigError(f"--{flag}: '{url}' is streamed, and a streamed log's factorization does not use a side "
                              f"table yet; train without --{flag}, or on fewer interactions (read whole)")
    started = time.perf_counter()
    manifest = read_manifest(url)
    verify_shards(manifest, url)
    log = LogStream.open(url, manifest, cfg.data)
    n_items, seed = len(log.item_ids), cfg.train.seed
    val_users, test_users = held_out_users(log, seed)
    held_key = np.full(len(log.user_ids), -1, np.int64)  # the held-out (user, item) pair's key, per sampled user
    for users in (val_users, test_users):
        held_key[users] = users * n_items + log.latest_item[users]
    validate, test = Evaluation(log, val_users, held_key), Evaluation(log, test_users, held_key)
    popular = Scorer({"model": "popularity"}, {"popularity": popularity_without(log, val_users, test_users)})
    board = [{"name": "popularity", "spec": popular.spec, "val": validate(popular), "seconds": 0.0}]
    shape = BprShape(MF_DIM, STREAM_EPOCHS, STREAM_BATCH, seed)

    def epoch_rows(epoch: int):
        for users, items in log.shuffled_rows(seed, epoch):
            keep = held_key[users] != users * n_items + items
            yield users[keep], items[keep]

    def after_epoch(epoch: int, model) -> None:
        progress(epoch, STREAM_EPOCHS, f"mf, pass {epoch}", validate(factors(model, popular))[f"ndcg@{K}"])

    trained = time.perf_counter()
    ranks, chosen, scorers = ranks_here(), popular, [popular]
    if cfg.model.name != "popularity":
        model = fit_bpr_streamed(epoch_rows, len(log.user_ids), n_items, shape, checkpoints, after_epoch, ranks)
        mf = factors(model, popular)
        board.append({"name": mf.name, "spec": mf.spec, "val": validate(mf),
                      "seconds": round(time.perf_counter() - trained, 2)})
        chosen = mf if board[1]["val"][f"ndcg@{K}"] > board[0]["val"][f"ndcg@{K}"] else popular
        scorers.append(mf)
    figures = {scorer.name: test(scorer) for scorer in scorers}
    recommender = shipped(log, chosen, folder, ranks.rank == 0)
    metrics = metrics_of(log, (validate, test), chosen, board, figures, time.perf_counter() - started)
    if ranks.size > 1:
        metrics["distributed"] = {"gradients": "the rows each batch touched, laid into one block per table and summed "
                                               "by one all-reduce a step; every rank holds whole replicas of the tables"}
    return recommender, metrics


def popularity_without(log: LogStream, *held_users: np.ndarray) -> torch.Tensor:
    counts = log.item_counts.copy()
    for users in held_users:
        np.subtract.at(counts, log.latest_item[users], 1)
    return torch.from_numpy(counts.astype(np.float32))


def factors(model, popular: Scorer) -> FactorScorer:
    weights = {"users": model.users.weight.detach().clone(), "items": model.items.weight.detach().clone(),
               "bias": model.bias.detach().clone(), "popularity": popular.weights["popularity"]}
    quiet_unseen(weights)
    return FactorScorer({"model": "mf", "dim": MF_DIM, "epochs": STREAM_EPOCHS}, weights)


def shipped(log: LogStream, chosen: Scorer, folder: Path | None, main: bool = True) -> Recommender:
    """The chosen scorer with every user's history, written to FOLDER/history.safetensors a block
    at a time and mapped back (a temporary folder when the run is not written). Only the main
    process writes; the others' recommenders have no histories (they write nothing either)."""
    import shutil
    import tempfile

    user_ids, item_ids = log.user_ids.tolist(), log.item_ids.tolist()
    if not main:
        return Recommender(chosen, np.zeros(len(user_ids) + 1, np.int64), np.zeros(0, np.int32), user_ids, item_ids)
    scratch = folder is None
    folder = Path(tempfile.mkdtemp(prefix="scaletrain-histories-")) if scratch else folder
    folder.mkdir(parents=True, exist_ok=True)
    indptr = np.r_[0, np.cumsum(log.user_counts)].astype(np.int64)
    write_histories(folder / FILE, indptr, log.history_blocks(indptr))
    histories = open_histories(folder / FILE, len(user_ids), len(item_ids))
    if scratch:  # the mapping keeps the unlinked file's pages readable (POSIX); nothing is left in /tmp
        shutil.rmtree(folder, ignore_errors=True)
    return Recommender(chosen, *histories, user_ids, item_ids)


def metrics_of(log: LogStream, evaluations: tuple, chosen: Scorer, board: list[dict], figures: dict,
               seconds: float) -> dict:
    validate, test = evaluations
    notes = log.notes + folding_note(len(log.user_ids))
    notes += [f"streamed: the latest item of {len(validate.users):,} sampled users held out for "
              f"validation and of {len(test.users):,} others for test (at most {EVAL_USERS:,} users and "
              f"{EVAL_ROWS:,} of their interactions each); one model trained ({STREAM_EPOCHS} passes) and shipped "
              f"(not refitted with the held-out items); chosen: {chosen.name}"]
    return {"task": "recommend", "model": chosen.name, "spec": chosen.spec, "k": K, "headline": f"ndcg@{K}",
            "data": {"interactions": int(log.user_counts.sum()), "users": len(log.user_ids), "items": len(log.item_ids),
                     "roles": log.roles, "split": f"streamed: each sampled user's latest item by "
                                                  f"'{log.roles['time'] or 'place in the log'}' held out"},
            "val": next(e["val"] for e in board if e["spec"] == chosen.spec), "test": figures[chosen.name],
            "baselines": {name: f for name, f in figures.items() if name != chosen.name}, "candidates": board,
            "parameters": int(sum(w.numel() for w in chosen.weights.values())), "train_seconds": round(seconds, 2),
            "notes": notes}
