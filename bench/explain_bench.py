"""Explaining speed and agreement (issues 18 and 30): `explain` (SHAP values against the run's
background rows, all rows in one pass) on 1,000 rows of a table run against shap's
KernelExplainer on the same model, rows, output and background, with how often the two agree on
each row's top column and top-3 columns. KernelExplainer is slow per row, so it explains a
sample of the rows and its time is given per row beside ours.

    python bench/explain_bench.py [--rows 1000] [--kernel-rows 40]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scaletrain  # noqa: E402
from scaletrain.explain import table_attributions  # noqa: E402
from tests.test_explain import planted  # noqa: E402


def kernel_shap(run, rows: pd.DataFrame, nsamples: int) -> tuple[pd.DataFrame, float]:
    """shap's KernelExplainer on the raw columns against the run's own background rows (so both
    explain the same game): a column's "value" is where its encoded slots come from — 0 the
    explained row, k the k-th background row — and the function explains the same output as
    ours (the predicted class's logit minus the mean of the others')."""
    import shap
    import torch

    from tests.shapley import Coalitions

    game = Coalitions(run, rows)
    b, m = len(game.bg_dense), len(game.columns)
    slot_of = [np.isin(game.slots, [c]) for c in game.columns]
    code_of = [np.asarray([n == c for n in game.embedded], dtype=bool) for c in game.columns]
    background = np.repeat(np.arange(1, b + 1)[:, None], m, axis=1).astype(float)
    started, values = time.perf_counter(), []
    for i in range(len(rows)):
        def f(z: np.ndarray, i=i) -> np.ndarray:
            dense, codes, z = game.dense[i].repeat(len(z), 1), game.codes[i].repeat(len(z), 1), z.astype(np.int64)
            for j in range(m):
                taken = np.flatnonzero(z[:, j] > 0)
                rows_, source = torch.from_numpy(taken)[:, None], torch.from_numpy(z[taken, j] - 1)
                if len(taken) and slot_of[j].any():
                    cols = torch.from_numpy(np.flatnonzero(slot_of[j]))
                    dense[rows_, cols] = game.bg_dense[source][:, cols]
                if len(taken) and code_of[j].any():
                    cols = torch.from_numpy(np.flatnonzero(code_of[j]))
                    codes[rows_, cols] = game.bg_codes[source][:, cols]
            return game.explained(dense, codes)[:, int(game.target[i])].numpy()

        explainer = shap.KernelExplainer(f, background)
        values.append(explainer.shap_values(np.zeros((1, m)), nsamples=nsamples, silent=True)[0])
    return pd.DataFrame(values, columns=game.columns), (time.perf_counter() - started) / len(rows)


def against_exact(rows: int = 200) -> None:
    """Which path attribution to use, measured against exact Shapley values (every coalition
    enumerated) of an MLP whose label needs an interaction (a·b), a saturating term and a category."""
    from tests.shapley import exact_shapley

    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(list("pqrs"), n),
                          "d": rng.normal(size=n)})
    logit = 2 * frame.a * frame.b + np.tanh(2 * frame.d) + 1.5 * (frame.c == "p") - frame.a
    frame["y"] = np.where(logit + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    run = scaletrain.fit(frame, "y", out=None, model="mlp", epochs=40)
    sample = frame.drop(columns="y").iloc[:rows]
    exact = exact_shapley(run, sample)
    for method, steps in (("deeplift", None), ("ig", 16), ("ig", 64)):
        started = time.perf_counter()
        found = table_attributions(run, sample, steps=steps or 16, method=method).frame[exact.columns]
        seconds = time.perf_counter() - started
        error = np.abs(found - exact).sum(axis=1) / np.abs(exact).sum(axis=1)
        print(f"   {method}{f' ({steps} steps)' if steps else ''} vs exact Shapley on {rows} rows: relative L1 error "
              f"median {error.median():.3f}, p90 {error.quantile(0.9):.3f}; same top column "
              f"{(found.abs().idxmax(axis=1) == exact.abs().idxmax(axis=1)).mean():.1%}; {seconds:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--kernel-rows", type=int, default=40)
    parser.add_argument("--nsamples", type=int, default=500)
    args = parser.parse_args(argv)
    against_exact()
    try:
        import shap  # noqa: F401
    except ImportError:
        print("   explain speed skipped: shap is not installed (make bench installs it)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = scaletrain.fit(planted(3000), "y", out=Path(tmp) / "run", model="mlp", epochs=30)
        rows = planted(args.rows, seed=7).drop(columns="y")
        started = time.perf_counter()
        ours = table_attributions(run, rows).frame
        per_row = (time.perf_counter() - started) / len(rows)
        sample = rows.iloc[:args.kernel_rows].reset_index(drop=True)
        theirs, kernel_per_row = kernel_shap(run, sample, args.nsamples)
        ours_sample = ours.iloc[:args.kernel_rows][theirs.columns]
        top3 = lambda f: [set(f.columns[np.argsort(-np.abs(r))[:3]]) for r in f.to_numpy()]  # noqa: E731
        agree = np.mean([a == b for a, b in zip(top3(ours_sample), top3(theirs))])
        top1 = float((ours_sample.abs().idxmax(axis=1) == theirs.abs().idxmax(axis=1)).mean())
        print(f"   explain (SHAP values against the run's 100 background rows, DeepLiftShap): {len(rows):,} rows in "
              f"{per_row * len(rows):.2f} s ({1e3 * per_row:.2f} ms/row)")
        print(f"   shap KernelExplainer (the same 100 background rows, nsamples {args.nsamples}): {kernel_per_row:.2f} s/row "
              f"on {args.kernel_rows} rows -> {kernel_per_row * len(rows) / 60:.1f} min for {len(rows):,} "
              f"({kernel_per_row / per_row:,.0f}x ours per row)")
        print(f"   same top column on {top1:.0%} and the same top-3 (as a set) on {agree:.0%} of the {args.kernel_rows} rows; "
              f"global top-3 ours "
              f"{list(ours.abs().mean().sort_values(ascending=False).index[:3])}, shap "
              f"{list(theirs.abs().mean().sort_values(ascending=False).index[:3])}")


if __name__ == "__main__":
    main()
