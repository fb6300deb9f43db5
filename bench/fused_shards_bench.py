"""Image columns from shards with bounded memory (issue 35): a generated table whose rows hold a
32×32 colour picture (a circle or a square over noise) and a number, label = circle XOR x > 0,
at N and 2N rows; each trained from the CSV in memory and from `scaletrain prepare`'s shards,
every training in its own process (`model.name=mlp`, one epoch). Then four epochs from the
shards of N rows without loader workers, with the encoded row groups kept between epochs
(`data.stream_cache_mb`, the default 1024) and without (0): the pictures decoded once or
every epoch.

Prints, per size and path, the training process's peak RSS (os.wait4), its wall time and test
accuracy. The in-memory path holds every decoded picture; the streamed one a few row groups
of 2,048 rows and up to 10,000 validation rows. (At 64×64 and 10,000–20,000 rows both peaked at
2.1–2.4 GiB: the convolutions' activations of a 512-row batch, not the data, set the peak there.)
Asserts nothing.

    python bench/fused_shards_bench.py [--rows 50000] [--dir /tmp/scaletrain-fused-shards]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SIDE = 32


def pictures_table(folder: Path, n: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        circle = bool(rng.random() < 0.5)
        noise = rng.integers(0, 90, size=(SIDE, SIDE, 3), dtype=np.uint8)
        image = Image.fromarray(noise, "RGB")
        r = int(rng.integers(SIDE // 6, SIDE // 3))
        cx, cy = (int(v) for v in rng.integers(r, SIDE - r, size=2))
        colour = tuple(int(v) for v in rng.integers(120, 256, size=3))
        (ImageDraw.Draw(image).ellipse if circle else ImageDraw.Draw(image).rectangle)(
            [cx - r, cy - r, cx + r, cy + r], fill=colour)
        image.save(folder / "img" / f"{i}.png")
        x = float(rng.uniform(-1, 1))
        rows.append({"photo": f"img/{i}.png", "x": x, "label": "yes" if circle != (x > 0) else "no"})
    pd.DataFrame(rows).to_csv(folder / "rows.csv", index=False)
    return folder / "rows.csv"


def measured(args: list[str]) -> tuple[float, float]:
    """Run `scaletrain ARGS` in its own process; return (seconds, peak RSS in GiB)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "scaletrain", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"scaletrain {' '.join(args)} failed: {process.stderr.read().decode()[-800:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dir", default="/tmp/scaletrain-fused-shards")
    options = parser.parse_args(argv)
    root = Path(options.dir)
    shutil.rmtree(root, ignore_errors=True)
    fixed = ["--set", "model.name=mlp", "--set", "train.epochs=1", "--quiet", "--overwrite"]
    print(f"{'rows':>7} | {'path':<9} | {'seconds':>7} | {'peak RSS (GiB)':>14} | test accuracy")
    try:
        for n in (options.rows, 2 * options.rows):
            table = pictures_table(root / str(n), n)
            subprocess.run([sys.executable, "-m", "scaletrain", "prepare", str(table), "--out", str(root / f"s{n}"),
                            "--target", "label", "--quiet"], check=True)
            for path, data in (("in memory", [str(table), "--target", "label"]), ("shards", [str(root / f"s{n}")])):
                out = root / f"run-{path.replace(' ', '-')}-{n}"
                seconds, peak = measured(["train", *data, "--out", str(out), *fixed])
                accuracy = json.loads((out / "metrics.json").read_text())["test"]["accuracy"]
                print(f"{n:>7,} | {path:<9} | {seconds:>7.1f} | {peak:>14.2f} | {accuracy:.4f}", flush=True)
        kept_epochs(root, options.rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def kept_epochs(root: Path, n: int) -> None:
    """Four streamed epochs, encoded row groups kept between them or not (same process kind)."""
    print(f"\n4 epochs from the shards of {n:,} rows, no loader workers:")
    fixed = ["--set", "model.name=mlp", "--set", "train.epochs=4", "--set", "train.early_stopping=100",
             "--set", "data.loader_workers=0", "--quiet", "--overwrite"]
    times = {}
    for cache in (0, 1024):
        out = root / f"kept-{cache}"
        times[cache], peak = measured(["train", str(root / f"s{n}"), "--out", str(out), *fixed,
                                       "--set", f"data.stream_cache_mb={cache}"])
        accuracy = json.loads((out / "metrics.json").read_text())["test"]["accuracy"]
        print(f"  stream_cache_mb={cache:<5} {times[cache]:6.1f} s, peak RSS {peak:.2f} GiB, test accuracy {accuracy:.4f}",
              flush=True)
    print(f"  kept / not kept: {times[1024] / times[0]:.2f}x the time")


if __name__ == "__main__":
    main()
