"""Data-parallel scaling: training samples/s with N ranks against N × the samples/s of one.

Runs `scaletrain train --nproc-per-node N` (torch.distributed's elastic launcher, gloo on CPU,
nccl on CUDA) for N = 1, 2, ... on the same synthetic table, the same global batch and epochs,
and prints samples/s and the scaling efficiency samples/s(N) / (N × samples/s(1)). Each rank
gets cores / N torch threads, so on a CPU machine the comparison is N processes against one
process using every core. `python bench/scaling.py [--ranks 1 2] [--rows 200000]`
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def table(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 32)).astype(np.float32)
    y = np.where(x[:, :4].sum(axis=1) + 0.5 * x[:, 4] * x[:, 5] > 0, "yes", "no")
    pd.DataFrame(x, columns=[f"x{i}" for i in range(32)]).assign(y=y).to_csv(path, index=False)
    return path


def samples_per_second(data: Path, out: Path, ranks: int, batch: int, epochs: int) -> float:
    subprocess.run([sys.executable, "-m", "scaletrain", "train", str(data), "--target", "y", "--out", str(out),
                    "--nproc-per-node", str(ranks), "--set", f"train.batch_size={batch}", "--set", f"train.epochs={epochs}",
                    "--set", "model.name=mlp", "--set", "model.width=512", "--set", "train.early_stopping=0",
                    "--quiet"], check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    history = pd.read_csv(out / "history.csv")
    return int(history["step"].iloc[-1]) * batch / metrics["train_seconds"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"\n10. data-parallel scaling (MLP width 512, {args.rows:,} rows, global batch {args.batch}, "
          f"median of {args.repeats} alternated runs)")
    with tempfile.TemporaryDirectory() as tmp:
        data = table(Path(tmp) / "table.csv", args.rows)
        runs: dict[int, list[float]] = {n: [] for n in args.ranks}
        for repeat in range(args.repeats):
            for n in args.ranks:
                runs[n].append(samples_per_second(data, Path(tmp) / f"run-{n}-{repeat}", n, args.batch, args.epochs))
    base = float(np.median(runs[args.ranks[0]]))
    for n in args.ranks:
        speed = float(np.median(runs[n]))
        print(f"    {n} rank(s): {speed:>10,.0f} samples/s   efficiency {speed / (n * base):.2f}   "
              f"(runs: {', '.join(f'{v:,.0f}' for v in runs[n])})")


if __name__ == "__main__":
    main(sys.argv[1:])
