"""The CUDA path, where a GPU is lent (the device tool; CI never has one): one training step of
the zero-config Fashion-MNIST ResNet in fp32/bf16, channels_last/contiguous, eager/compiled,
timed with CUDA events after warm-up; our loop against a plain PyTorch loop on the GPU; then
zero-config Fashion-MNIST end to end with `--time-limit 30s` (wall time and test accuracy) and
masked-LM pretraining for 45 s, eager and compiled (tokens/s).

    python bench/gpu_paths.py [--fashion DIR] [--steps 50] [--parts steps,loops,fashion,grid,pretrain]

`grid`: the same 30-s run with wider nets and larger batches (GRID), for the >= 0.95 aim.

Prints one JSON object per figure; ratios are to fp32 channels_last eager at the same batch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MODES = ["fp32 channels_last", "fp32 contiguous", "bf16 channels_last", "bf16 channels_last compile"]


def step_time(mode: str, batch: int, steps: int) -> dict:
    from cpu_paths import resnet_step

    step = resnet_step(mode, batch, "cuda")
    started = time.perf_counter()
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    warm = time.perf_counter() - started
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(steps):
        step()
    end.record()
    torch.cuda.synchronize()
    return {"mode": mode, "batch": batch, "ms_per_step": round(begin.elapsed_time(end) / steps, 3),
            "images_per_s": round(batch * steps / (begin.elapsed_time(end) / 1000)), "warm_s": round(warm, 1)}


def cli(*args: str, timeout: float = 600) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "scaletrain", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        print(done.stderr[-3000:], flush=True)
    return time.perf_counter() - started, done.stdout + done.stderr


# Wider nets and larger batches for a GPU's 30 s (a width-16 net at batch 256 is launch-bound
# there: 4.5 ms a step on an H200 whatever its width up to a point); lr scaled with the batch
GRID = [("width 32, batch 512", ["model.width=32", "train.batch_size=512", "train.lr=0.2"]),
        ("width 32, batch 1024", ["model.width=32", "train.batch_size=1024", "train.lr=0.4"]),
        ("width 64, batch 512", ["model.width=64", "train.batch_size=512", "train.lr=0.2"]),
        ("width 64, batch 1024", ["model.width=64", "train.batch_size=1024", "train.lr=0.4"])]


def fashion_run(fashion: Path, limit: str, out: Path, sets: tuple[str, ...] = (), label: str = "zero-config") -> dict:
    sets_args = [a for s in sets for a in ("--set", s)]
    seconds, _ = cli("train", str(fashion), "--out", str(out), "--time-limit", limit, "--quiet", "--overwrite", *sets_args)
    m = json.loads((out / "metrics.json").read_text())
    return {"figure": f"{label} Fashion-MNIST --time-limit {limit}", "notes": m.get("notes"), "wall_s": round(seconds, 1),
            "test_accuracy": round(m["test"]["accuracy"], 4), "epochs": m["epochs"], "model": m["model"],
            "parameters": m["parameters"], "train_seconds": round(m["train_seconds"], 1),
            "seconds_by_phase": m.get("seconds")}


def pretraining(out: Path, limit: str, compile_: str = "off") -> dict:
    import random

    words = [f"w{i}" for i in range(3000)]
    rng = random.Random(0)
    corpus = out.parent / "corpus.txt"
    if not corpus.exists():
        corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(20, 120))) for _ in range(60000)))
    seconds, _ = cli("pretrain", str(corpus), "--out", str(out), "--time-limit", limit, "--quiet", "--overwrite",
                     "--set", f"train.compile={compile_}")
    m = json.loads((out / "metrics.json").read_text())
    return {"figure": f"masked-LM pretraining --time-limit {limit} (BERT-mini shape), compile {compile_}",
            "wall_s": round(seconds, 1), "tokens_per_s": m["tokens_per_second"],
            "steps": m["steps"], "val_loss": round(m["validation"]["val_loss"], 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--parts", default="steps,loops,fashion,pretrain", help="comma-separated: which figures")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    for batch in (256, 2048) if "steps" in parts else ():
        base = None
        for mode in MODES:
            figure = step_time(mode, batch, args.steps)
            base = base or figure["ms_per_step"]
            print(json.dumps(figure | {"ratio_to_fp32_channels_last": round(figure["ms_per_step"] / base, 3)}), flush=True)
    if "loops" in parts:
        from overhead import loops

        loops("cuda")  # the loop-overhead ratio on the GPU, where launch overhead is what a loop adds
    work = Path(tempfile.mkdtemp(prefix="gpu-"))
    if "fashion" in parts:
        print(json.dumps(fashion_run(args.fashion, "30s", work / "fashion30")), flush=True)
    for label, sets in GRID if "grid" in parts else ():
        print(json.dumps(fashion_run(args.fashion, "30s", work / "fashion30", tuple(sets), label)), flush=True)
    for compile_ in ("off", "on") if "pretrain" in parts else ():
        print(json.dumps(pretraining(work / f"pretrain-{compile_}", "45s", compile_)), flush=True)


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
    main()
