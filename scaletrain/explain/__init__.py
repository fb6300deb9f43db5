"""`scaletrain explain` and `predict --explain K`: why a run decides as it does.

One explainer per kind of run (a registry, as for modalities): tables (their columns by
Integrated Gradients, the words of free-text columns by taking each out) and images (heatmaps).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from scaletrain.errors import ExportError
from scaletrain.explain.attributions import Attributions, permutation_importance, table_attributions
from scaletrain.explain.images import explain_images
from scaletrain.explain.tables import explain_table, reasons_frame, top_reasons
from scaletrain.run import Run

__all__ = ["explain_run", "predict_reasons", "top_reasons", "table_attributions", "permutation_importance",
           "Attributions"]

EXPLAINERS = {"table": explain_table, "image": explain_images}


def explain_run(run_dir: str | Path, data, out: str | Path | None = None, rows: int = 1000) -> dict:
    """Write explain.html and the numbers behind it into `out` (default RUN/explain); return
    the summary (its `headline` says the gist in one line)."""
    run = Run.load(run_dir)
    explainer = EXPLAINERS.get(run.modality.name)
    if explainer is None:
        raise ExportError(f"explain does not handle {run.modality.name} runs yet")
    out = Path(out) if out else run.path / "explain"
    out.mkdir(parents=True, exist_ok=True)
    return explainer(run, data, out, rows)


def predict_reasons(run: Run, data, k: int) -> pd.DataFrame:
    """The k strongest reasons per row of a table run's input (columns, and words of free text)."""
    if run.modality.name != "table":
        raise ExportError(f"predict --explain names columns and words of table runs; for {run.modality.name} runs "
                          "use `scaletrain explain RUN DATA` (heatmaps)")
    return top_reasons(reasons_frame(run, run.source(data).frame), k)
