"""`scaletrain explain` and `predict --explain K`: why a table run decides as it does."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.explain.attributions import Attributions, permutation_importance, table_attributions
from scaletrain.io import write_json, write_text
from scaletrain.run import Run

__all__ = ["explain_run", "top_reasons", "table_attributions", "permutation_importance", "Attributions"]


def top_reasons(attributions: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k strongest reasons per row: reason_i (a column) and reason_i_attribution (signed)."""
    values = attributions.to_numpy()
    order = np.argsort(-np.abs(values), axis=1)[:, :k]
    names = np.asarray(attributions.columns)
    out = {}
    for i in range(order.shape[1]):
        out[f"reason_{i + 1}"] = names[order[:, i]]
        out[f"reason_{i + 1}_attribution"] = np.take_along_axis(values, order[:, i:i + 1], axis=1)[:, 0]
    return pd.DataFrame(out, index=attributions.index)


def explain_run(run_dir: str | Path, data, out: str | Path | None = None, rows: int = 1000) -> dict:
    """Write explanations.csv (each row's attribution per raw column, with its prediction),
    importance.json and explain.html into `out` (default RUN/explain); return the summary."""
    from scaletrain.data.tables import read_table

    run = Run.load(run_dir)
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    frame = frame.iloc[:rows].reset_index(drop=True)
    found = table_attributions(run, frame)
    target = run.preprocess.get("target_column")
    labelled = target in frame.columns and frame[target].notna().all()
    importance = found.frame.abs().mean().sort_values(ascending=False)
    gap = np.abs(found.frame.sum(axis=1).to_numpy() - (found.output - found.baseline))
    summary = {"rows": len(frame), "method": "Integrated Gradients (Captum), all-zero baseline in the model's input space",
               "mean_abs_attribution": {k: float(v) for k, v in importance.items()},
               "permutation_importance": permutation_importance(run, frame) if labelled else None,
               "completeness_max_abs_error": float(gap.max()) if len(gap) else 0.0}
    out = Path(out) if out else run.path / "explain"
    out.mkdir(parents=True, exist_ok=True)
    predicted = run.predict(frame)
    table = pd.concat([predicted[["prediction"]], found.frame.add_prefix("attribution_")], axis=1)
    table.to_csv(out / "explanations.csv", index=False)
    write_json(out / "importance.json", summary)
    write_text(out / "explain.html", _page(run, summary, top_reasons(found.frame, 3), predicted["prediction"]))
    return summary


def _bars(values: dict[str, float], title: str) -> str:
    """A horizontal bar chart as inline SVG."""
    items = list(values.items())[:20]
    top = max((abs(v) for _, v in items), default=1.0) or 1.0
    rows = "".join(
        f'<text x="0" y="{22 * i + 15}">{html.escape(str(k))}</text>'
        f'<rect x="160" y="{22 * i + 3}" width="{max(1.0, 300 * abs(v) / top):.1f}" height="15" fill="#4a7bd0"/>'
        f'<text x="{165 + 300 * abs(v) / top:.1f}" y="{22 * i + 15}">{v:.3g}</text>' for i, (k, v) in enumerate(items))
    return (f"<h2>{html.escape(title)}</h2><svg class='chart' width='560' height='{22 * len(items) + 10}' "
            f"font-size='12' font-family='sans-serif'>{rows}</svg>")


def _page(run: Run, summary: dict, reasons: pd.DataFrame, predictions: pd.Series) -> str:
    charts = _bars(summary["mean_abs_attribution"], "Mean |attribution| per column (Integrated Gradients)")
    if summary["permutation_importance"]:
        drops = dict(sorted(summary["permutation_importance"].items(), key=lambda kv: -kv[1]))
        charts += _bars(drops, "Permutation importance: score lost when the column is shuffled")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["row", "prediction", *reasons.columns])
    body = "".join("<tr>" + f"<td>{i}</td><td>{html.escape(str(predictions[i]))}</td>" + "".join(
        f"<td>{v:.3g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for i, row in zip(reasons.index[:50], reasons.to_numpy()[:50]))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>explain {html.escape(run.path.name)}</title>"
            "<style>body{font:14px sans-serif;max-width:900px;margin:2em auto}td,th{padding:2px 8px;text-align:left}"
            "</style></head><body>"
            f"<h1>Why {html.escape(run.path.name)} predicts what it does</h1><p>{summary['rows']} rows; "
            f"{html.escape(summary['method'])}; attributions sum to f(row) − f(baseline) within "
            f"{summary['completeness_max_abs_error']:.2g}.</p>{charts}"
            f"<h2>The three strongest reasons per row (first 50)</h2><table><tr>{head}</tr>{body}</table></body></html>")
