"""A self-contained report.html: data summary, learning curves, confusion matrix or residuals.

Plots are PNGs embedded as base64, so the file opens anywhere with no network or assets.
"""
from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from scaletrain.tasks import task_of

_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}
img{max-width:100%}.note{color:#666;font-size:.9em}.w{border-radius:3px;padding:0 1px}
.text{line-height:1.7;max-width:760px}"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_html(plot_id: str, title: str, fig) -> str:
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
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    if "val_loss" in history[0]:
        left.plot(epochs, [row["val_loss"] for row in history], label="validation loss")
    left.set_xlabel("epoch"), left.set_ylabel("loss"), left.legend(), left.grid(alpha=.3)
    right.plot(epochs, [row.get("val_score", np.nan) for row in history], color="tab:green")
    right.set_xlabel("epoch"), right.set_ylabel(f"validation {score_name}"), right.grid(alpha=.3)
    return figure_html("learning-curves", "Learning curves", fig)


def confusion_plot(y_true: np.ndarray, y_pred: np.ndarray, classes: list) -> str:
    labels = list(range(len(classes)))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    size = min(12, 2 + 0.5 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    names = [str(c) for c in classes]
    ax.set_xticks(labels, names, rotation=45, ha="right"), ax.set_yticks(labels, names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    if len(classes) <= 20:
        for i in labels:
            for j in labels:
                ax.text(j, i, matrix[i, j], ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    return figure_html("confusion-matrix", "Confusion matrix (test)", fig)


def residual_plot(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.scatter(y_true, y_pred, s=8, alpha=.6)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    left.plot([lo, hi], [lo, hi], color="gray", lw=1)
    left.set_xlabel("true"), left.set_ylabel("predicted"), left.set_title("predicted vs true")
    right.scatter(y_pred, y_true - y_pred, s=8, alpha=.6)
    right.axhline(0, color="gray", lw=1)
    right.set_xlabel("predicted"), right.set_ylabel("residual (true − predicted)"), right.set_title("residuals")
    return figure_html("residuals", "Residuals (test)", fig)


def leaderboard_section(board, score_name: str) -> str:
    """Return the search's section: every trial's score in order, and the leaderboard."""
    trials = board[board["trial"] != "default"].copy()
    trials["number"] = trials["trial"].astype(int)
    trials = trials.sort_values("number")
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for state, color in (("COMPLETE", "tab:blue"), ("PRUNED", "tab:gray"), ("FAIL", "tab:red")):
        part = trials[trials["state"] == state]
        ax.scatter(part["number"], part["score"], color=color, label=state.lower(), s=18)
    done = trials[trials["state"] == "COMPLETE"]
    if len(done):
        ax.step(done["number"], done["score"].cummax(), where="post", color="tab:blue", alpha=.5, label="best so far")
    default = board[board["trial"] == "default"]
    if len(default):
        ax.axhline(float(default["score"].iloc[0]), color="tab:orange", ls="--", label="zero-config default")
    ax.set_xlabel("trial"), ax.set_ylabel(f"validation {score_name}"), ax.grid(alpha=.3), ax.legend(fontsize=8)
    rows = board.drop(columns=[c for c in ("error",) if c in board and not board[c].astype(bool).any()])
    return ("<h2>Search</h2>" + figure_html("search", f"validation {score_name} by trial", fig)
            + table_html(rows.to_dict("records")))


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
