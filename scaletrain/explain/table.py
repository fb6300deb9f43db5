"""`scaletrain explain` for table runs: each raw column's attribution per row measured against
the run's background rows (explain/attributions.py), permutation importance on labelled rows,
and the words of free-text columns."""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.explain.attributions import permutation_importance, table_attributions
from scaletrain.explain.base import Explainer
from scaletrain.explain.pages import bars, page
from scaletrain.explain.pictures import column_heatmaps, pictures_section
from scaletrain.explain.sampled import ORDERS
from scaletrain.explain.text import has_text, highlighted, top_words, word_attributions
from scaletrain.io import write_json, write_text
from scaletrain.run import Assessment, Run

TEXT_ROWS = 100  # rows whose words are taken out one at a time (a forward pass per word)
REPORT_ROWS = 300   # test rows attributed for the report's global view
REPORT_PATHS = 25   # a mean over 300 rows needs fewer background rows per row than a row's own reasons
REPORT_TEXT_ROWS = 60
REPORT_SAMPLED_PATHS, REPORT_ORDERS = 10, 2  # sampled Shapley values: the mean's noise is over 300 rows


def method_of(run: Run) -> str:
    """How the run's rows are attributed, in words (explain.html, importance.json)."""
    if not hasattr(run.model, "body"):
        return (f"SHAP values by Shapley value sampling ({ORDERS} column orders per row, antithetic) against "
                f"{len(run.background['dense']) if run.background else 1} training rows (background.safetensors; "
                f"the all-zero input for older runs): each raw column switched from the background row's value to "
                f"the row's own; the explained output is the predicted class's logit minus the mean of the others'")
    if run.background is None:
        return "DeepLIFT / Integrated Gradients (Captum) from the all-zero input (a run written before backgrounds were kept)"
    return (f"SHAP values against {len(run.background['dense'])} training rows (background.safetensors): DeepLIFT's "
            "rescale rule (Captum DeepLiftShap) averaged over them, or Integrated Gradients where the network has "
            "layers DeepLIFT does not cover; the explained output is the predicted class's logit minus the mean of the "
            "others' (the log-odds for two classes; the value for regression)")


def top_reasons(attributions: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k strongest reasons per row: reason_i (a column, or `column: word`) and
    reason_i_attribution (signed)."""
    values = attributions.to_numpy(dtype=np.float64, na_value=0.0)
    order = np.argsort(-np.abs(values), axis=1)[:, :k]
    names = np.asarray(attributions.columns)
    out = {}
    for i in range(order.shape[1]):
        out[f"reason_{i + 1}"] = names[order[:, i]]
        out[f"reason_{i + 1}_attribution"] = np.take_along_axis(values, order[:, i:i + 1], axis=1)[:, 0]
    return pd.DataFrame(out, index=attributions.index)


def reasons_frame(run: Run, frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, every column's attribution and, for free text, each word's (`text: word`)."""
    found = table_attributions(run, frame).frame
    if not has_text(run):
        return found
    column = "+".join(run.preprocess["text"]["columns"])
    words = [{f"{column}: {w.text[s:e]}": a for s, e, a in w.spans} for w in word_attributions(run, frame)]
    return pd.concat([found, pd.DataFrame(words)], axis=1)


def explain_table(run: Run, data, out: Path, rows: int) -> dict:
    """Write explanations.csv (each row's attribution per raw column, with its prediction),
    importance.json and explain.html into `out`; return the summary."""
    frame = data if isinstance(data, pd.DataFrame) else run.source(data).frame  # image paths: from the table's folder
    frame = frame.iloc[:rows].reset_index(drop=True)
    found = table_attributions(run, frame)
    target = run.preprocess.get("target_column")
    labelled = target in frame.columns and frame[target].notna().all()
    importance = found.frame.abs().mean().sort_values(ascending=False)
    gap = np.abs(found.frame.sum(axis=1).to_numpy() - (found.output - found.baseline)) if found.frame.shape[1] else []
    words = word_attributions(run, frame, TEXT_ROWS) if has_text(run) else []
    summary = {"rows": len(frame), "method": method_of(run),
               "mean_abs_attribution": {k: float(v) for k, v in importance.items()},
               "permutation_importance": permutation_importance(run, frame) if labelled else None,
               "completeness_max_abs_error": float(np.max(gap)) if len(gap) else 0.0}
    if words:
        summary["words"] = {"method": "each word taken out in turn (Captum FeatureAblation): the drop in the "
                                      "predicted class's output", "rows": len(words), "strongest": top_words(words)}
    predicted = run.predict(frame)
    table = pd.concat([predicted[["prediction"]], found.frame.add_prefix("attribution_"),
                       pd.DataFrame({"explained_output": found.output, "background_output": found.baseline,
                                     "completeness_error": found.delta})], axis=1)
    table.to_csv(out / "explanations.csv", index=False)
    if words:
        write_json(out / "words.json", [{"row": i, "text": w.text, "words": [list(s) for s in w.spans]}
                                        for i, w in enumerate(words)])
    figures, summary["pixels"] = pictures_section(column_heatmaps(run, frame), predicted["prediction"]) \
        if run.preprocess.get("images") else ("", None)
    write_json(out / "importance.json", summary)
    write_text(out / "explain.html", _page(run, summary, top_reasons(found.frame, 3), predicted["prediction"], words,
                                           figures))
    strongest = summary["mean_abs_attribution"] or summary.get("words", {}).get("strongest", {})
    summary["headline"] = "strongest: " + ", ".join(f"{k} {v:.3g}" for k, v in list(strongest.items())[:5])
    return summary


def _page(run: Run, summary: dict, reasons: pd.DataFrame, predictions: pd.Series, words: list, figures: str) -> str:
    charts = bars(summary["mean_abs_attribution"], "Mean |attribution| per column (against the background rows)") \
        if summary["mean_abs_attribution"] else ""
    if summary["permutation_importance"]:
        drops = dict(sorted(summary["permutation_importance"].items(), key=lambda kv: -kv[1]))
        charts += bars(drops, "Permutation importance: score lost when the column is shuffled")
    if words:
        charts += bars(summary["words"]["strongest"], "Words with the largest mean attribution (taken out: the drop)")
        charts += "<h2>Words per row (red: towards the prediction, blue: against)</h2>" + "".join(
            f"<p class='text'><b>row {i}: {html.escape(str(predictions[i]))}</b> — {highlighted(w)}</p>"
            for i, w in enumerate(words[:30]))
    charts += figures
    if reasons.shape[1]:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["row", "prediction", *reasons.columns])
        body = "".join("<tr>" + f"<td>{i}</td><td>{html.escape(str(predictions[i]))}</td>" + "".join(
            f"<td>{v:.3g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for i, row in zip(reasons.index[:50], reasons.to_numpy()[:50]))
        charts += f"<h2>The three strongest reasons per row (first 50)</h2><table><tr>{head}</tr>{body}</table>"
    intro = (f"{summary['rows']} rows; {html.escape(summary['method'])}; a row's attributions sum to its output "
             f"minus the background rows' mean output within {summary['completeness_max_abs_error']:.2g}.")
    return page(f"Why {run.path.name} predicts what it does", intro, charts)


class TableExplainer(Explainer):
    def explain(self, run: Run, data, out: Path, rows: int) -> dict:
        return explain_table(run, data, out, rows)

    def reasons(self, run: Run, data, k: int) -> pd.DataFrame:
        return top_reasons(reasons_frame(run, run.source(data).frame), k)

    def importance_section(self, run: Run, a: Assessment) -> str:
        frame = a.source.frame.iloc[a.rows[:REPORT_ROWS]].reset_index(drop=True)
        sampled = not hasattr(run.model, "body")  # trees and blends: a pass per column and order (sampled.py)
        found = table_attributions(run, frame, paths=REPORT_SAMPLED_PATHS if sampled else REPORT_PATHS,
                                   orders=REPORT_ORDERS).frame
        out = ""
        if found.shape[1]:
            importance = found.abs().mean().sort_values(ascending=False)
            out += bars({k: float(v) for k, v in importance.items()},
                        f"Global importance: mean |attribution| per column over {len(frame)} test rows")
        if has_text(run):
            words = word_attributions(run, frame, REPORT_TEXT_ROWS)
            out += bars(top_words(words), f"Words with the largest mean attribution over {len(words)} test rows "
                                          "(each taken out: the drop)")
        return "<div id='importance'>" + out + "</div>" if out else ""

    def mistakes_section(self, run: Run, a: Assessment, chosen: np.ndarray, captions: list[str]) -> str:
        if not has_text(run):
            return ""
        words = word_attributions(run, a.source.frame.iloc[a.rows[chosen]].reset_index(drop=True))
        return ("<h2>The most confident mistakes (test): the words behind each</h2><div id='mistakes'>"
                "<p class='note'>red: towards the predicted class, blue: against</p>" + "".join(
                    f"<p class='text'><b>{html.escape(c)}</b> — {highlighted(w, 600)}</p>" for c, w in zip(captions, words))
                + "</div>")


EXPLAINER = TableExplainer()  # found by explain/__init__.explainer_for under the modality's name
