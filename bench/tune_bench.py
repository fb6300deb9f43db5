"""Tuning inside a time budget: `scaletrain tune --time-limit T` against zero-config
`scaletrain train --time-limit T`, the same data and the same budget, side by side.

Prints per dataset: the search's wall time as a ratio to T (goal ≤ 1.10), its trial count,
and the test accuracy of the zero-config run and of the tuned, retrained best (goal: tuned ≥
default). Datasets: digits images, breast cancer (table), and a Fashion-MNIST subset (8,000
training images, the first 2,000 of the official test images).

`python bench/tune_bench.py [--scale 1.0]` (--scale multiplies every budget).
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FASHION = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an MNIST-format IDX file: magic (uint8 type, ndim), big-endian dims, raw bytes."""
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        fh.write(struct.pack(f">{array.ndim}I", *array.shape))
        fh.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fashion_subset(folder: Path, train: int = 8000, test: int = 2000) -> Path | None:
    from scaletrain.modalities.image.images import IDX_NAMES, find_idx, read_idx

    if find_idx(FASHION) is None:
        return None
    full_train, full_test = read_idx(find_idx(FASHION))
    keep = np.random.default_rng(0).permutation(len(full_train.labels))[:train]
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / IDX_NAMES["train_x"], full_train.images[keep][..., 0])
    _write_idx(folder / IDX_NAMES["train_y"], full_train.labels[keep])
    _write_idx(folder / IDX_NAMES["test_x"], full_test.images[:test][..., 0])
    _write_idx(folder / IDX_NAMES["test_y"], full_test.labels[:test])
    return folder


def datasets(root: Path) -> list[tuple[str, Path, str | None, float]]:
    from sklearn.datasets import load_breast_cancer

    from scaletrain.datasets import write_digits_folder

    cases = [("digits images", write_digits_folder(root / "digits"), None, 120.0)]
    csv = root / "breast_cancer.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(csv, index=False)
    cases.append(("breast cancer", csv, "target", 60.0))
    fashion = fashion_subset(root / "fashion8k")
    if fashion is not None:
        cases.append(("Fashion-MNIST 8k", fashion, None, 300.0))
    return cases


def _cli(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "scaletrain", *args, "--quiet"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"scaletrain {' '.join(args)} failed:\n{done.stderr}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    print("\n9. tune vs zero-config train, same data and time limit (tune: Bayesian search, default space)")
    print(f"   {'dataset':<18}{'limit':>7}{'tune wall':>11}{'÷ limit':>9}{'trials':>8}"
          f"{'default test':>14}{'tuned test':>12}{'tuned - default':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data, target, limit in datasets(root):
            limit *= args.scale
            extra = ["--target", target] if target else []
            _cli("train", str(data), *extra, "--time-limit", f"{limit:.0f}s", "--out", str(root / f"{name}-default"))
            default = json.loads((root / f"{name}-default" / "metrics.json").read_text())["test"]["accuracy"]
            wall = _cli("tune", str(data), *extra, "--time-limit", f"{limit:.0f}s", "--out", str(root / f"{name}-tune"))
            tuned = json.loads((root / f"{name}-tune" / "best" / "metrics.json").read_text())["test"]["accuracy"]
            trials = json.loads((root / f"{name}-tune" / "tune.json").read_text())["trials"]
            print(f"   {name:<18}{limit:>6.0f}s{wall:>10.1f}s{wall / limit:>9.3f}{trials:>8}"
                  f"{default:>14.4f}{tuned:>12.4f}{tuned - default:>+17.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
