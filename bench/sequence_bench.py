"""Zero-config on a sequence column against 1-NN in the same run: JapaneseVowels (Kudo et al.
1999; 9 speakers' /ae/ as 12 LPC cepstra per frame, 7-29 frames; 270 training and 370 test
utterances, the UCR/UEA split), read from the `aeon` wheel's .ts files (fetched with pip
download, nothing installed) and written as Parquet with a list-of-vectors column.

Baselines: 1-NN by Euclidean distance on the sequences padded with zeros (standardized per
coefficient, as ours), and 1-NN by dynamic time warping (DTW, full window) — the classic
time-series classification baselines.

Prints accuracies and seconds; asserts nothing.

    python bench/sequence_bench.py [--work DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import scaletrain  # noqa: E402

AEON = "aeon==1.6.0"
WHERE = "aeon/datasets/data/JapaneseVowels/JapaneseVowels_{}.ts"


def read_ts(text: str) -> pd.DataFrame:
    """A multivariate .ts file: per line, the dimensions separated by ':', each a comma list of
    the steps' values, the label last."""
    rows, labels, data = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("@data"):
            data = True
            continue
        if data:
            *dims, label = line.split(":")
            rows.append(np.array([[float(v) for v in d.split(",")] for d in dims]).T.tolist())
            labels.append(label)
    return pd.DataFrame({"cepstra": rows, "speaker": labels})


def japanese_vowels(work: Path) -> tuple[Path, Path] | None:
    wheels = work / "wheel"
    if not list(wheels.glob("aeon-*.whl")):
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", AEON, "-d", str(wheels)],
                              capture_output=True, text=True)
        if done.returncode:
            print(f"  the aeon wheel could not be fetched ({done.stderr.strip()[-200:]}): skipped")
            return None
    with zipfile.ZipFile(next(wheels.glob("aeon-*.whl"))) as wheel:
        parts = [read_ts(wheel.read(WHERE.format(p)).decode()) for p in ("TRAIN", "TEST")]
    paths = work / "train.parquet", work / "test.parquet"
    for frame, path in zip(parts, paths):
        frame.to_parquet(path)
    return paths


def steps_of(cell) -> np.ndarray:
    """A Parquet list of lists (an array of arrays) as a (steps, 12) array."""
    return np.stack([np.asarray(v, dtype=float) for v in cell])


def padded(frame: pd.DataFrame, mean: np.ndarray, std: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((len(frame), steps, len(mean)))
    lengths = np.zeros(len(frame), int)
    for i, seq in enumerate(frame.cepstra):
        seq = (steps_of(seq) - mean) / std
        out[i, :len(seq)], lengths[i] = seq, len(seq)
    return out, lengths


def one_nn(train: pd.DataFrame, test: pd.DataFrame) -> dict:
    """1-NN accuracies: Euclidean on zero-padded sequences, and DTW (each test sequence against
    every training one at once, one step of the test by one of the training sequences)."""
    steps = np.concatenate(list(train.cepstra.map(steps_of)))
    mean, std = steps.mean(0), steps.std(0)
    longest = max(train.cepstra.map(len).max(), test.cepstra.map(len).max())
    a, la = padded(train, mean, std, longest)
    b, lb = padded(test, mean, std, longest)
    labels = train.speaker.to_numpy()
    distances = ((b[:, None] - a[None]) ** 2).sum((2, 3))
    euclidean = float((labels[distances.argmin(1)] == test.speaker.to_numpy()).mean())
    started, found = time.perf_counter(), []
    for seq, n in zip(b, lb):
        cost = np.linalg.norm(seq[:n, None, None, :] - a[None], axis=-1)  # (test step, train row, train step)
        total = np.full((len(a), n + 1, longest + 1), np.inf)
        total[:, 0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, longest + 1):
                total[:, i, j] = cost[i - 1, :, j - 1] + np.minimum(np.minimum(total[:, i - 1, j], total[:, i, j - 1]),
                                                                    total[:, i - 1, j - 1])
        found.append(labels[total[np.arange(len(a)), n, la].argmin()])
    dtw = float((np.asarray(found) == test.speaker.to_numpy()).mean())
    return {"euclidean": euclidean, "dtw": dtw, "dtw_seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="sequence_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    paths = japanese_vowels(work)
    if paths is None:
        return
    train, test = (pd.read_parquet(p) for p in paths)
    baseline = one_nn(train, test)
    started = time.perf_counter()
    run = scaletrain.fit(str(paths[0]), "speaker", test=str(paths[1]), out=work / "run", overwrite=True)
    seconds = time.perf_counter() - started
    print(f"  JapaneseVowels ({len(train)} train / {len(test)} test utterances, 12 cepstra × 7-29 frames)")
    print(f"    zero-config ({run.config.model.name}): test accuracy {run.metrics['test']['accuracy']:.4f} "
          f"in {seconds:.0f} s; notes: {' | '.join(n for n in run.metrics.get('notes', []) if 'compared' in n)}")
    print(f"    1-NN Euclidean (zero-padded): {baseline['euclidean']:.4f}; "
          f"1-NN DTW: {baseline['dtw']:.4f} ({baseline['dtw_seconds']:.0f} s)")
    best = max(baseline["euclidean"], baseline["dtw"])
    print(f"    zero-config minus the better 1-NN: {run.metrics['test']['accuracy'] - best:+.4f}")


if __name__ == "__main__":
    main()
