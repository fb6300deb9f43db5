"""Metrics by task (each task computes its own, tasks/), and per-class figures for the report."""
from __future__ import annotations

import numpy as np

from scaletrain.tasks import task_of

# scikit-learn (with scipy: ~1.4 s) is imported where a figure needs it: `predict`, `serve` and
# `export` load a run through this module and compute none of them


def main_score_name(task: str) -> str:
    """Return the headline metric of a task (higher is better)."""
    return task_of(task).headline


def score_outputs(task: str, outputs, y, target: dict | None = None) -> float:
    """The task's headline score (accuracy or R²) from raw model outputs and encoded targets,
    as each epoch's validation reports it (`target`: the run's fitted target state)."""
    return task_of(task).score_outputs(outputs, y, target)


def compute_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> dict:
    """Return the task's metrics; y_true/y_pred are class indices or target values."""
    return task_of(task).metrics(y_true, y_pred, proba)


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list) -> list[dict]:
    """Return precision, recall, F1 and support for each class."""
    from sklearn import metrics as skm

    labels = list(range(len(class_names)))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return [{"class": str(name), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
             "support": int(s[i])} for i, name in enumerate(class_names)]
