"""Issue 17's compression figures: a zero-config digits run and a zero-config run on a
Fashion-MNIST subset, each distilled into a quarter of its parameters, pruned by half, and
quantized to int8 — measured side by side by `scaletrain compress` (onnxruntime, this machine).

    python bench/compress_bench.py [--fashion-rows 12000] [--time-limit 4m]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import scaletrain
from scaletrain.compress import compress_run
from scaletrain.datasets import write_digits_folder

FASHION = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def show(name: str, summary: dict, seconds: float) -> None:
    score = summary["score"]
    print(f"\n   {name} ({seconds / 60:.1f} min)")
    print(f"   {'variant':<10}{'params':>10}{'MB':>8}{'ms/row':>9}{'ms/batch':>10}{'x row':>7}{'x batch':>8}"
          f"{score:>10}{'same cls':>9}")
    base = summary["variants"]["original"]
    for v, f in summary["variants"].items():
        print(f"   {v:<10}{f['parameters']:>10,}{f['size_mb']:>8.3f}{f['ms_per_row']:>9.3f}{f['ms_per_batch']:>10.2f}"
              f"{f['latency_ratio_row']:>7.2f}{f['latency_ratio_batch']:>8.2f}{f[score]:>10.4f}"
              f"{f.get('same_class_as_original', 1):>9.4f}")
    for v in ("distilled", "pruned", "int8"):
        f = summary["variants"].get(v)
        if f:
            print(f"   {v}: {f['parameters'] / base['parameters']:.3f} of the parameters, "
                  f"{100 * (f[score] - base[score]):+.2f} points, {f['how']}")
    print(f"   recommended: {summary['recommended']['variant']} — {summary['recommended']['why']}")


def one(name: str, data, tmp: Path, **fit) -> None:
    started = time.perf_counter()
    run = scaletrain.fit(data, out=tmp / f"{name}-run", **fit)
    trained = time.perf_counter() - started
    print(f"\n   {name}: zero-config {run.config.model.name}, {run.metrics['parameters']:,} parameters, test accuracy "
          f"{run.metrics['test']['accuracy']:.4f} ({trained / 60:.1f} min)")
    started = time.perf_counter()
    summary = compress_run(tmp / f"{name}-run", data, tmp / f"{name}-compressed", distill=0.25, prune=0.5, quantize="int8")
    show(name, summary, time.perf_counter() - started)


def fashion_subset(rows: int, folder: Path) -> Path:
    from scaletrain.modalities.image.images import find_idx, read_idx

    train, _ = read_idx(find_idx(FASHION))
    keep = np.random.default_rng(0).permutation(len(train.images))[:rows]
    path = folder / f"fashion{rows}.npz"
    np.savez(path, x=train.images[keep], y=train.labels[keep])
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fashion-rows", type=int, default=12000)
    parser.add_argument("--time-limit", default="4m")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one("digits", write_digits_folder(tmp / "digits"), tmp)
        if FASHION.is_dir():
            one(f"fashion-mnist {args.fashion_rows:,}", fashion_subset(args.fashion_rows, tmp), tmp,
                time_limit=args.time_limit)
        else:
            print(f"   Fashion-MNIST skipped: {FASHION} missing (apt-get install -y dataset-fashion-mnist)")


if __name__ == "__main__":
    main()
