"""`scaletrain explain` and `predict --explain K`: why a run decides as it does.

One explainer per modality: tables (their columns by SHAP values against the run's training
rows, the words of free-text columns by taking each out) and images (heatmaps). Each is the
`EXPLAINER` of the module named after its modality (explain/table.py, explain/image.py), found
by that name: explainers read runs and draw with evaluate/, so they sit above the run layer and
cannot live in the modality packages below it; naming them after the modality keeps a new
modality at one registry line (modalities/__init__.py) plus, if it explains, one module here.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd

from scaletrain.explain.attributions import Attributions, permutation_importance, table_attributions
from scaletrain.explain.base import Explainer
from scaletrain.explain.table import top_reasons
from scaletrain.run import Run

__all__ = ["explain_run", "predict_reasons", "explainer_for", "top_reasons", "table_attributions",
           "permutation_importance", "Attributions"]



def explainer_for(run: Run) -> Explainer:
    """The explainer of the run's modality (the base one, which explains nothing, where its
    modality has no module here). The name is a registered modality's: Run.load checked it."""
    name = f"scaletrain.explain.{run.modality.name}"
    try:
        return importlib.import_module(name).EXPLAINER
    except ModuleNotFoundError as exc:
        if exc.name != name:  # a missing library inside the explainer: the user must see it
            raise
        return Explainer()


def explain_run(run_dir: str | Path, data, out: str | Path | None = None, rows: int = 1000) -> dict:
    """Write explain.html and the numbers behind it into `out` (default RUN/explain); return
    the summary (its `headline` says the gist in one line)."""
    run = Run.load(run_dir)
    explainer = explainer_for(run)
    out = Path(out) if out else run.path / "explain"
    out.mkdir(parents=True, exist_ok=True)
    return explainer.explain(run, data, out, rows)


def predict_reasons(run: Run, data, k: int) -> pd.DataFrame:
    """The k strongest reasons per row of a table run's input (columns, and words of free text)."""
    return explainer_for(run).reasons(run, data, k)
