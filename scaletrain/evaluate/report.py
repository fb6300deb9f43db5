"""A self-contained report.html: data summary, learning curves, confusion matrix or residuals.

Charts are inline SVG (evaluate.charts) and pictures PNGs embedded as base64, so the file opens
anywhere with no network or assets.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from sklearn.metrics import confusion_matrix

from scaletrain.evaluate.charts import COLOURS, Panel, Series, chart, figure_svg, matrix_chart
from scaletrain.tasks import task_of

_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}
img{max-width:100%}.note{color:#666;font-size:.9em}.w{border-radius:3px;padding:0 1px}
.text{line-height:1.7;max-width:760px}.tiles{display:flex;flex-wrap:wrap;gap:8px}
.tile{display:flex;flex-direction:column;align-items:center;font-size:.75em;width:116px;overflow:hidden}"""


def pyplot():
    """matplotlib's pyplot on the file-only backend, imported where a picture is drawn (0.6 s an
    import: a run whose report is charts alone never pays it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_html(plot_id: str, title: str, fig) -> str:
    """A matplotlib figure (a picture: heatmaps over images, contours) as the report's <figure>."""
    return (f'<figure id="{plot_id}"><img alt="{html.escape(title)}" src="data:image/png;base64,{_png(fig)}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def table_html(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(map(str, value)) or "—")
    return html.escape(str(value))


def learning_curves(history: list[dict], score_name: str) -> str:
    epochs = [row["epoch"] for row in history]
    losses = [Series(epochs, [row["train_loss"] for row in history], "train loss")]
    if "val_loss" in history[0]:
        losses.append(Series(epochs, [row["val_loss"] for row in history], "validation loss", COLOURS["orange"]))
    score = Series(epochs, [row.get("val_score", np.nan) for row in history], colour=COLOURS["green"])
    panels = [Panel(losses, "epoch", "loss"), Panel([score], "epoch", f"validation {score_name}")]
    return figure_svg("learning-curves", "Learning curves", chart(panels, "Learning curves"))


def confusion_plot(y_true: np.ndarray, y_pred: np.ndarray, classes: list) -> str:
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    title = "Confusion matrix (test)"
    return figure_svg("confusion-matrix", title, matrix_chart(matrix, [str(c) for c in classes], "predicted", "true", title))


def residual_plot(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    panels = [Panel([Series(y_true, y_pred, kind="points", sizes=8),
                     Series([lo, hi], [lo, hi], colour=COLOURS["gray"])], "true", "predicted", "predicted vs true"),
              Panel([Series(y_pred, y_true - y_pred, kind="points", sizes=8), Series(y=[0.0], colour=COLOURS["gray"], kind="hline")],
                    "predicted", "residual (true − predicted)", "residuals")]
    svg = chart(panels, "Residuals (test)")
    return figure_svg("residuals", "Residuals (test)", svg, panels[0].notes)


def leaderboard_section(board, score_name: str) -> str:
    """Return the search's section: every trial's score in order, and the leaderboard."""
    trials = board[board["trial"] != "default"].copy()
    trials["number"] = trials["trial"].astype(int)
    trials = trials.sort_values("number")
    series = []
    for state, colour in (("COMPLETE", COLOURS["blue"]), ("PRUNED", COLOURS["gray"]), ("FAIL", COLOURS["red"])):
        part = trials[trials["state"] == state]
        if len(part):
            series.append(Series(part["number"], part["score"], state.lower(), colour, kind="points", sizes=18))
    done = trials[trials["state"] == "COMPLETE"]
    if len(done):
        series.append(Series(done["number"], done["score"].cummax(), "best so far", COLOURS["blue"], kind="step"))
    default = board[board["trial"] == "default"]
    if len(default):
        series.append(Series(y=[float(default["score"].iloc[0])], label="zero-config default", colour=COLOURS["orange"],
                             kind="hline", dashed=True))
    title = f"validation {score_name} by trial"
    svg = chart([Panel(series, "trial", f"validation {score_name}")], title)
    rows = board.drop(columns=[c for c in ("error",) if c in board and not board[c].astype(bool).any()])
    return "<h2>Search</h2>" + figure_svg("search", title, svg) + table_html(rows.to_dict("records"))


def build_page(title: str, body: str) -> str:
    """A self-contained HTML page around `body`."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def build_report(title: str, summary: dict, metrics: dict, history: list[dict], task: str,
                 y_true: np.ndarray | None, y_pred: np.ndarray | None, classes: list | None,
                 per_class: list[dict] | None, notes: list[str], sections: list[str] | None = None) -> str:
    """Return the report as one HTML string; `sections` (HTML) are appended at the end."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append("<h2>Data</h2>" + table_html([{"what": k, "value": v} for k, v in summary.items()]))
    if notes:
        parts.append("<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h2>Metrics</h2>" + table_html([{"split": split, **values} for split, values in metrics.items()]))
    if history:
        parts.append("<h2>Training</h2>" + learning_curves(history, task_of(task).score_label))
    if y_true is not None and len(y_true):
        if not task_of(task).classifies:
            parts.append("<h2>Errors</h2>" + residual_plot(np.asarray(y_true, float), np.asarray(y_pred, float)))
        else:
            parts.append("<h2>Errors</h2>" + confusion_plot(y_true, y_pred, classes))
            parts.append("<h2>Per-class metrics (test)</h2>" + table_html(per_class or []))
    parts.extend(sections or [])
    parts.append("</body></html>")
    return "\n".join(parts)
