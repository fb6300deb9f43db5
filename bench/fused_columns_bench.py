"""Fused inputs' combiners and per-column starts, on the generated shapes task of
tests/test_fused.py (label = circle XOR x > 0): each combiner over 3 seeds; then a CNN trained on
600 other drawings starting the image column of a fused table of 60 and 120 rows, against the
same table from scratch (accuracy on 600 other rows). `python bench/fused_columns_bench.py`."""
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scaletrain  # noqa: E402
from tests.test_fused import shapes_table  # noqa: E402

SEEDS = 3


def combiners(table: Path) -> None:
    for combiner in ("concat", "gated", "attention"):
        scores, seconds = [], []
        for seed in range(SEEDS):
            started = time.perf_counter()
            run = scaletrain.fit(str(table), "label", out=None,
                                 sets=["model.name=mlp", f"model.combiner={combiner}", f"train.seed={seed}"])
            seconds.append(time.perf_counter() - started)
            scores.append(run.metrics["test"]["accuracy"])
        print(f"  combiner {combiner:<9} test accuracy {np.mean(scores):.4f} ± {np.std(scores):.4f} "
              f"({SEEDS} seeds), {np.mean(seconds):.1f} s a fit", flush=True)


def image_run(root: Path) -> Path:
    """A CNN on 600 drawings of their own, filed by shape."""
    table = shapes_table(root / "drawings", n=600, seed=2)
    for i, row in pd.read_csv(table).iterrows():
        shape = root / "shapes" / ("circle" if (row["label"] == "yes") != (row["x"] > 0) else "square")
        shape.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "drawings" / row["photo"], shape / f"{i}.png")
    run = scaletrain.fit(str(root / "shapes"), out=root / "cnn", sets=["model.name=cnn", "train.epochs=6"])
    print(f"  image run (cnn, 600 drawings): test accuracy {run.metrics['test']['accuracy']:.4f}", flush=True)
    return root / "cnn"


def starts(root: Path, cnn: Path, test: Path) -> None:
    start = [f"model.encoders.photo.init_from={cnn}", "train.freeze=1"]
    for n in (60, 120):
        small = shapes_table(root / f"small{n}", n=n, seed=3)
        for name, extra in (("from scratch", []), ("image column started from the CNN, frozen", start)):
            scores = [scaletrain.fit(str(small), "label", test=str(test), out=None,
                                     sets=["model.name=mlp", f"train.seed={seed}"] + extra).metrics["test"]["accuracy"]
                      for seed in range(SEEDS)]
            print(f"  {n} fused rows, {name}: accuracy on 600 other rows {np.mean(scores):.4f} ± {np.std(scores):.4f}",
                  flush=True)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="fused-columns-"))
    try:
        table = shapes_table(root / "big", n=600, seed=1)
        print("fused inputs: combiners and per-column starts (generated shapes task)")
        combiners(table)
        starts(root, image_run(root), table)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
