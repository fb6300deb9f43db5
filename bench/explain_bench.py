"""Issue 18's explaining speed: `explain` (Integrated Gradients, all rows in one pass) on 1,000
rows of a table run against shap's KernelExplainer on the same model and rows, with how often
the two agree on each row's top-3 columns. KernelExplainer is slow per row, so it explains a
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


def kernel_shap(run, rows: pd.DataFrame, background: pd.DataFrame, nsamples: int) -> tuple[pd.DataFrame, float]:
    """KernelExplainer on the raw columns (categories as codes the function turns back into
    strings), explaining the probability of each row's predicted class."""
    import shap

    columns = [c for c in rows.columns]
    codes = {c: sorted(map(str, background[c].dropna().unique())) for c in columns if not pd.api.types.is_numeric_dtype(rows[c])}

    def encode(frame: pd.DataFrame) -> np.ndarray:
        return np.column_stack([frame[c].map({v: i for i, v in enumerate(codes[c])}).fillna(-1).to_numpy(float)
                                if c in codes else frame[c].to_numpy(float) for c in columns])

    def decode(z: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({c: [codes[c][int(round(v))] if v >= 0 else None for v in z[:, i]] if c in codes else z[:, i]
                             for i, c in enumerate(columns)})

    predicted = run.predict(rows)["prediction"].to_numpy()
    started = time.perf_counter()
    values = []
    explainer = None
    for i in range(len(rows)):
        cls = f"proba_{predicted[i]}"
        explainer = shap.KernelExplainer(lambda z, cls=cls: run.predict(decode(z))[cls].to_numpy(), encode(background))
        values.append(explainer.shap_values(encode(rows.iloc[[i]]), nsamples=nsamples, silent=True)[0])
    return pd.DataFrame(values, columns=columns), (time.perf_counter() - started) / len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--kernel-rows", type=int, default=40)
    parser.add_argument("--nsamples", type=int, default=500)
    args = parser.parse_args(argv)
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
        theirs, kernel_per_row = kernel_shap(run, sample, planted(3000).drop(columns="y").sample(50, random_state=0),
                                             args.nsamples)
        ours_sample = ours.iloc[:args.kernel_rows][theirs.columns]
        top = lambda f: [set(f.columns[np.argsort(-np.abs(r))[:3]]) for r in f.to_numpy()]  # noqa: E731
        agree = np.mean([a == b for a, b in zip(top(ours_sample), top(theirs))])
        print(f"   explain (Integrated Gradients): {len(rows):,} rows in {per_row * len(rows):.2f} s "
              f"({1e3 * per_row:.2f} ms/row)")
        print(f"   shap KernelExplainer (50 background rows, nsamples {args.nsamples}): {kernel_per_row:.2f} s/row on "
              f"{args.kernel_rows} rows -> {kernel_per_row * len(rows) / 60:.1f} min for {len(rows):,} "
              f"({kernel_per_row / per_row:,.0f}x ours per row)")
        print(f"   same top-3 columns (as a set) on {agree:.0%} of the {args.kernel_rows} rows; global top-3 ours "
              f"{list(ours.abs().mean().sort_values(ascending=False).index[:3])}, shap "
              f"{list(theirs.abs().mean().sort_values(ascending=False).index[:3])}")


if __name__ == "__main__":
    main()
