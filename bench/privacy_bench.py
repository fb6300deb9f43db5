"""Issue 18's privacy figures: DP-SGD's training time as a ratio to non-private training of the
same model (published Opacus overhead 2.6–8×; goal ≤ 2×), and a loss-threshold membership
attack's AUC on models trained without privacy, with ε = 8 and with ε = 1, beside their test
accuracy, on a synthetic table and two real ones.

    python bench/privacy_bench.py [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scaletrain  # noqa: E402
from tests.test_privacy import OVERFIT, attack_auc, noisy_rows  # noqa: E402

FASHION = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FIXED = ["train.early_stopping=0", "train.calibration=none", "train.threshold_metric=none"]


def epoch_seconds(run) -> float:
    """Seconds per epoch after the first (the steps' throughput; setup and the first epoch's warm-up apart)."""
    rows = run.history
    return (rows[-1]["seconds"] - rows[0]["seconds"]) / max(len(rows) - 1, 1)


def timed(data, target, sets, **kw) -> tuple[float, object]:
    started = time.perf_counter()
    run = scaletrain.fit(data, target, sets=FIXED + sets, **kw) if target else scaletrain.fit(data, sets=FIXED + sets, **kw)
    return time.perf_counter() - started, run


def throughput(quick: bool) -> None:
    print("DP-SGD training time against the same model trained without privacy (one process, 2 cores)")
    table = noisy_rows(4000 if quick else 20000, 3)
    cases = [("MLP 2x256, table of %d rows" % len(table), table, "y",
              ["model.name=mlp", "model.width=256", "train.batch_size=256"], 3 if quick else 5)]
    if FASHION.exists():
        from scaletrain.modalities.image.images import find_idx, read_idx

        train, _ = read_idx(find_idx(FASHION))
        n = 3000 if quick else 10000
        cases.append((f"CNN (GroupNorm), Fashion-MNIST {n} images", train.images[:n], None,
                      ["model.name=cnn", "model.norm=group", "train.batch_size=256"], 3))
        x_labels = train.labels[:n]
    for name, data, target, sets, epochs in cases:
        y = None if target else x_labels
        plain_s, plain = timed(data, target, sets, y=y, epochs=epochs)
        private_s, private = timed(data, target, sets + ["train.privacy.epsilon=8"], y=y, epochs=epochs)
        with _opacus_only():  # the same DP-SGD through Opacus's ghost clipping (two backward passes)
            _, opacus = timed(data, target, sets + ["train.privacy.epsilon=8"], y=y, epochs=epochs)
        a, b, c = epoch_seconds(plain), epoch_seconds(private), epoch_seconds(opacus)
        print(f"  {name}, {epochs} epochs: {a:.2f} s → {b:.2f} s an epoch, **{b / a:.2f}×** (Opacus's ghost clipping "
              f"on the same model: {c:.2f} s, {c / a:.2f}×); training in all "
              f"{plain.metrics['train_seconds']:.1f} → {private.metrics['train_seconds']:.1f} s "
              f"({private.metrics['train_seconds'] / plain.metrics['train_seconds']:.2f}×), whole fit {private_s / plain_s:.2f}×; "
              f"test accuracy {plain.metrics['test']['accuracy']:.4f} → {private.metrics['test']['accuracy']:.4f} "
              f"(Opacus {opacus.metrics['test']['accuracy']:.4f}) at ε = {private.metrics['privacy']['epsilon']:.2f}; "
              f"clipping: {private.metrics['privacy']['clipping']}")


@contextlib.contextmanager
def _opacus_only():
    from scaletrain.train import bookkeeping

    supports = bookkeeping.supports
    bookkeeping.supports = lambda model: False
    try:
        yield
    finally:
        bookkeeping.supports = supports


def real_tables() -> list[tuple[str, pd.DataFrame]]:
    from sklearn.datasets import load_breast_cancer, load_digits

    cancer = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "y"})
    digits = load_digits(as_frame=True).frame.rename(columns={"target": "y"})
    return [("breast cancer", cancer), ("digits (as a table)", digits)]


def membership(quick: bool) -> None:
    print("\nLoss-threshold membership attack (Yeom et al. 2018): AUC of 'trained on' vs 'held out' (0.5: no leak)")
    rng = np.random.default_rng(0)
    sets = [("synthetic noisy table", noisy_rows(300, 0), noisy_rows(300, 1))]
    for name, frame in real_tables():
        order = rng.permutation(len(frame))
        half = len(frame) // 2
        sets.append((name, frame.iloc[order[:half]].reset_index(drop=True), frame.iloc[order[half:]].reset_index(drop=True)))
    for name, members, others in sets[:1] if quick else sets:
        cells = []
        for label, extra in (("no privacy", []), ("ε = 8", ["train.privacy.epsilon=8"]), ("ε = 1", ["train.privacy.epsilon=1"])):
            run = scaletrain.fit(members, "y", test=others, model="mlp", epochs=60 if quick else 120, sets=OVERFIT + extra)
            cells.append(f"{label}: AUC {attack_auc(run, members, others):.3f}, test accuracy {run.metrics['test']['accuracy']:.3f}")
        print(f"  {name} ({len(members)} trained on, {len(others)} held out): " + "; ".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    throughput(args.quick)
    membership(args.quick)


if __name__ == "__main__":
    main()
