"""A recommender on 20 M interactions with bounded memory (issue 34): a generated log
(power-law users and items, 20 planted taste groups: 70% of a user's items from theirs) prepared into shards by `scaletrain
prepare` and trained by `scaletrain train SHARDS --task recommend` in its own process; then
the same with the log doubled (40 M, the same users and items, each twice as active).

Prints each size's peak RSS of the training process (the goal: ≤ 2 GiB, flat when the data
doubles), its time and its test NDCG@10 / HR@10 beside popularity's. Asserts nothing.

    python bench/recommend_scale.py [--millions 20] [--dir /tmp/scaletrain-recommend-scale]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

USERS, ITEMS, GROUPS = 138_000, 27_000, 20  # MovieLens-20M's users and items
ROWS_PER_FILE = 5_000_000


def log_part(index: int, rows: int) -> pa.Table:
    """`rows` interactions: users drawn by a power law of activity; 70% of each user's items from
    their taste group (user % GROUPS), the rest from the whole catalogue, both by a power law
    of popularity; times increasing through the log."""
    rng = np.random.default_rng(index)
    users = rng.choice(USERS, rows, p=power_law(USERS, 0.8))
    in_group = rng.choice(ITEMS // GROUPS, rows, p=power_law(ITEMS // GROUPS, 0.7)) * GROUPS + users % GROUPS
    anywhere = rng.choice(ITEMS, rows, p=power_law(ITEMS, 0.9))
    items = np.where(rng.random(rows) < 0.7, in_group, anywhere)
    scramble = np.random.default_rng(99).permutation(ITEMS)  # ids unrelated to popularity
    times = 1_000_000_000 + index * rows + np.arange(rows)
    return pa.table({"userId": users.astype(np.int64) + 1, "movieId": scramble[items].astype(np.int64) + 1,
                     "timestamp": times.astype(np.int64)})


def power_law(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def generate(folder: Path, millions: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(-(-millions * 1_000_000 // ROWS_PER_FILE)):
        path = folder / f"part-{index:03d}.parquet"
        if not path.exists():
            pq.write_table(log_part(index, ROWS_PER_FILE), path.with_suffix(".tmp"))
            path.with_suffix(".tmp").rename(path)
        files.append(path)
    return files


def timed(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in GiB) of one command run as its own process: os.wait4 gives that
    child's own resource usage, whatever other children this process had before."""
    import os
    import tempfile

    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if child.returncode:
            output.seek(0)
            raise SystemExit(f"{' '.join(command[:4])}… failed:\n{output.read()[-3000:]}")
    return seconds, usage.ru_maxrss / 2 ** 20  # Linux reports KiB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--millions", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/scaletrain-recommend-scale"))
    args = parser.parse_args(argv)
    cli = [sys.executable, "-m", "scaletrain"]
    print(f"  generated logs: {USERS:,} users, {ITEMS:,} items, {GROUPS} taste groups, power-law activity and "
          "popularity; each size prepared into shards, then trained in a process of its own")
    for millions in (args.millions, 2 * args.millions):
        files = generate(args.dir / "log", millions)
        shards, run = args.dir / f"shards-{millions}m", args.dir / f"run-{millions}m"
        if not (shards / "manifest.json").exists():
            seconds, _ = timed(cli + ["prepare", *map(str, files), "--out", str(shards), "--target", "timestamp",
                                         "--quiet"])
            print(f"    {millions} M: prepare {seconds:.0f} s")
        seconds, rss = timed(cli + ["train", str(shards), "--task", "recommend", "--out", str(run), "--overwrite",
                                       "--quiet"])
        metrics = json.loads((run / "metrics.json").read_text())
        test, popular = metrics["test"], next(iter(metrics["baselines"].values()))
        print(f"    {millions} M interactions: train {seconds:.0f} s, peak RSS {rss:.2f} GiB; test NDCG@10 "
              f"{test['ndcg@10']:.4f} HR@10 {test['hr@10']:.4f} ({metrics['model']}) vs popularity "
              f"{popular['ndcg@10']:.4f} / {popular['hr@10']:.4f}, {test['users_scored']:,} test users")


if __name__ == "__main__":
    main()
