"""Recommendation (issue 34) on MovieLens-100K: zero-config `train --task recommend` beside
popularity, EASE (λ = 500, Steck's) and implicit's ALS (its factors and regularization chosen
on the same validation users), every model on the same split, every item ranked with the
user's seen items excluded. Two splits: leave-last-out by time (the pipeline's own), and a
random 75/25 per user (the same data without its time column, data.test_fraction=0.25).

MovieLens' licence forbids redistribution: the ratings are read from the `recbole` 1.2.1 wheel,
fetched with `pip download --no-deps` (nothing is installed). `implicit` is installed by
`make bench` only. Prints figures; asserts nothing.

    python bench/ranking_bench.py [--work DIR]
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import scaletrain  # noqa: E402
from scaletrain.config import make_config  # noqa: E402
from scaletrain.evaluate.ranking import ranking_metrics  # noqa: E402
from scaletrain.recommend.fit import K, held_out, part_of, score  # noqa: E402
from scaletrain.recommend.interactions import history, interactions_from  # noqa: E402
from scaletrain.recommend.scorers import FactorScorer, Scorer, fit_scorer  # noqa: E402

RATINGS = "recbole/dataset_example/ml-100k/ml-100k.inter"


def fetch_wheel(work: Path) -> Path | None:
    """The recbole 1.2.1 wheel (MovieLens-100K inside), fetched with pip into WORK/wheel once."""
    wheels = work / "wheel"
    if not list(wheels.glob("recbole-*.whl")):
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "recbole==1.2.1", "-d",
                               str(wheels)], capture_output=True, text=True)
        if done.returncode:
            print(f"  the recbole wheel could not be fetched ({done.stderr.strip()[-200:]}): skipped")
            return None
    return next(wheels.glob("recbole-*.whl"))


def movielens(work: Path) -> pd.DataFrame | None:
    wheel = fetch_wheel(work)
    if wheel is None:
        return None
    with zipfile.ZipFile(wheel) as archive:
        frame = pd.read_csv(io.BytesIO(archive.read(RATINGS)), sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def side_table(work: Path, suffix: str, rename: dict) -> Path | None:
    """The wheel's side table `ml-100k<suffix>` as WORK/<suffix>.csv, its columns renamed."""
    wheel = fetch_wheel(work)
    if wheel is None:
        return None
    with zipfile.ZipFile(wheel) as archive:
        frame = pd.read_csv(io.BytesIO(archive.read(RATINGS.replace(".inter", suffix))), sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    frame = frame.rename(columns=rename)
    if "release_year" in frame:
        frame["release_year"] = pd.to_numeric(frame["release_year"], errors="coerce")
    out = work / f"{suffix.strip('.')}.csv"
    frame.to_csv(out, index=False)
    return out


def als_scorer(found, rows: np.ndarray, factors: int, regularization: float) -> Scorer:
    """implicit's ALS fitted on `rows`, as a scorer (user factors @ item factors)."""
    from implicit.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix

    indptr, indices = history(found.users[rows], found.items[rows], None, found.n_users)
    matrix = csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(found.n_users, found.n_items))
    model = AlternatingLeastSquares(factors=factors, regularization=regularization, iterations=20, random_state=0)
    model.fit(matrix, show_progress=False)
    users, items = (torch.from_numpy(np.asarray(f)) for f in (model.user_factors, model.item_factors))
    return FactorScorer({"model": "mf"}, {"users": users, "items": items, "bias": torch.zeros(found.n_items),
                                          "popularity": torch.zeros(found.n_items)})


def baselines(frame: pd.DataFrame, sets: dict) -> dict[str, dict]:
    """Popularity, EASE (λ = 500) and ALS (chosen on validation) on the pipeline's own split."""
    cfg = make_config(None, None, **sets)
    found = interactions_from(frame, cfg.data, "MovieLens-100K")
    everything = np.arange(len(found.users))
    train, test = held_out(found, everything, cfg.data.test_fraction, cfg.train.seed)
    inner, val = held_out(found, train, cfg.data.val_fraction, cfg.train.seed + 1)
    test_part, val_part = part_of(found, train, test), part_of(found, inner, val)
    users = np.flatnonzero([len(h) > 0 for h in test_part.held])
    val_users = np.flatnonzero([len(h) > 0 for h in val_part.held])
    found_figures = {}
    for name, spec in (("popularity", {"model": "popularity"}), ("EASE (λ=500)", {"model": "ease", "l2": 500.0})):
        started = time.perf_counter()
        indptr, indices = history(found.users[train], found.items[train], None, found.n_users)
        scorer = fit_scorer(spec, indptr, indices, found.n_items, 0)
        found_figures[name] = score(found, test_part, scorer, users) | {"seconds": time.perf_counter() - started}
    try:
        import implicit  # noqa: F401
    except ImportError:
        print("    implicit is not installed (make bench installs it): ALS skipped")
        return found_figures
    started = time.perf_counter()
    grid = [(f, r) for f in (32, 64, 128) for r in (0.01, 0.1, 1.0)]
    best = max(grid, key=lambda fr: score(found, val_part, als_scorer(found, inner, *fr), val_users)[f"ndcg@{K}"])
    found_figures[f"ALS ({best[0]} factors, reg {best[1]:g})"] = score(
        found, test_part, als_scorer(found, train, *best), users) | {"seconds": time.perf_counter() - started}
    return found_figures


def compare(frame: pd.DataFrame, split: str, sets: dict) -> None:
    started = time.perf_counter()
    run = scaletrain.fit(frame, out=None, data__task="recommend", **sets)
    seconds = time.perf_counter() - started
    rows = {f"zero-config: {run.metrics['model']}": run.metrics["test"] | {"seconds": seconds}}
    rows |= {f"  its candidate {name}": figures | {"seconds": 0.0} for name, figures in run.metrics["baselines"].items()
             if not name.startswith("popularity")}
    rows |= baselines(frame, {"data__task": "recommend", **sets})
    print(f"    {split} ({run.metrics['data']['split']}; {run.metrics['test']['users_scored']} users scored)")
    for name, m in rows.items():
        print(f"      {name:36s} NDCG@10 {m['ndcg@10']:.4f} ± {m['ndcg@10_se']:.4f}  HR@10 {m['hr@10']:.4f} "
              f"± {m['hr@10_se']:.4f}  coverage {m['coverage']:.3f}  {m['seconds']:.1f} s")


def cold_users(frame: pd.DataFrame, items: Path, users: Path, share: float = 0.1) -> None:
    """A seeded tenth of the users are taken out of the log; the two towers trained on the rest with
    both side tables rank the whole catalogue for them from their features alone, beside
    popularity (what a user with no history gets without a users table). Held out: all their items."""
    rng = np.random.default_rng(0)
    ids = frame["userId"].unique()
    cold = set(rng.choice(ids, int(len(ids) * share), replace=False).tolist())
    run = scaletrain.fit(frame[~frame["userId"].isin(cold)], out=None, data__task="recommend", model="twotower",
                         data__items=str(items), data__users=str(users))
    model = run.recommender
    asked = sorted(cold)
    index = {item: i for i, item in enumerate(model.item_ids)}
    held = [np.array([index[i] for i in frame.loc[frame["userId"] == u, "movieId"] if i in index]) for u in asked]
    print(f"    cold users: {len(asked)} users taken out of the log, ranked from their features alone "
          "(two towers with --items and --users) vs popularity, every item of theirs held out")
    for name, users_index in (("two towers, users' features", model.user_indices(asked)),
                              ("popularity (no users table)", np.full(len(asked), -1))):
        lists, _ = model.top(users_index, K)
        m = ranking_metrics(lists, held, model.n_items)
        print(f"      {name:36s} NDCG@10 {m['ndcg@10']:.4f} ± {m['ndcg@10_se']:.4f}  HR@10 {m['hr@10']:.4f} "
              f"± {m['hr@10_se']:.4f}  coverage {m['coverage']:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ranking_bench_"))
    frame = movielens(work)
    if frame is None:
        return
    frame = frame.rename(columns={"user_id": "userId", "item_id": "movieId"})
    print(f"  MovieLens-100K: {len(frame):,} ratings, {frame['userId'].nunique()} users, {frame['movieId'].nunique()} "
          "movies; every model fully ranks the catalogue, seen items excluded")
    compare(frame, "leave-last-out", {})
    compare(frame.drop(columns="timestamp"), "random 75/25", {"data__test_fraction": 0.25})
    items = side_table(work, ".item", {"item_id": "movieId", "class": "genres"})
    users = side_table(work, ".user", {"user_id": "userId"})
    if items is not None and users is not None:
        compare(frame, "leave-last-out, with the movies' side table (--items: title words, genres, year)",
                {"data__items": str(items)})
        compare(frame, "leave-last-out, with the movies' and the users' side tables (--users: age, gender, "
                       "occupation, zip code)", {"data__items": str(items), "data__users": str(users)})
        cold_users(frame, items, users)


if __name__ == "__main__":
    main()
