"""Issue 19's sizing: zero-config Fashion-MNIST under a time limit with the conv net's width
chosen by the scaling probe (train.sizing=probe) and by the halving rule (epochs), run one after
the other on the same machine; test accuracy, the width each chose, epochs, wall time.

    python bench/size_probe_bench.py [--limits 10m,3m]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaletrain.io import read_json  # noqa: E402

FASHION = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def one_run(limit: str, probe: str, out: Path) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scaletrain", "train", str(FASHION), "--time-limit", limit, "--quiet",
                    "--set", f"train.sizing={probe}", "--out", str(out)], check=True)
    wall = time.perf_counter() - started
    metrics = read_json(out / "metrics.json")
    width = yaml.safe_load((out / "config.yaml").read_text())["model"]["width"]
    probe_found = metrics.get("size_probe", {})
    return {"probe": probe, "limit": limit, "accuracy": metrics["test"]["accuracy"], "width": width,
            "epochs": metrics["epochs"], "wall": wall, "probe_seconds": probe_found.get("seconds"),
            "predicted": probe_found.get("predicted_by_width")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="10m")
    args = parser.parse_args(argv)
    if not FASHION.exists():
        print(f"  skipped: no Fashion-MNIST at {FASHION} (apt-get install dataset-fashion-mnist)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for limit in args.limits.split(","):
            rows = [one_run(limit, probe, Path(tmp) / f"{limit}-{probe}") for probe in ("epochs", "probe")]
            for r in rows:
                predicted = ", ".join(f"{w}: {v:.3f}" for w, v in (r["predicted"] or {}).items())
                print(f"  --time-limit {limit}, sizing={r['probe']}: test accuracy **{r['accuracy']:.4f}**, width "
                      f"{r['width']}, {r['epochs']} epochs, wall {r['wall']:.0f} s"
                      + (f"; probe {r['probe_seconds']:.0f} s, predicted loss by width {predicted}" if r["predicted"] else ""))
            print(f"    probe − rule: {rows[1]['accuracy'] - rows[0]['accuracy']:+.4f} test accuracy (goal ≥ 0.939)")


if __name__ == "__main__":
    main()
