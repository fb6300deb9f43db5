"""Metrics by task, computed with scikit-learn so they match what users already trust."""
from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

from scaletrain.tasks import task_of


def main_score_name(task: str) -> str:
    """Return the headline metric of a task (higher is better)."""
    return task_of(task).headline


def score_outputs(task: str, outputs, y) -> float:
    """The task's headline score (accuracy or R²) from raw model outputs and encoded targets,
    as each epoch's validation reports it (R² is the same on standardized targets)."""
    if not task_of(task).classifies:
        predicted = outputs.squeeze(-1)
    elif outputs.shape[1] == 1:  # bce: one logit
        predicted = (outputs.squeeze(-1) > 0).long()
    else:
        predicted = outputs.argmax(1)
    truth, predicted = y.detach().cpu().numpy(), predicted.detach().float().cpu().numpy()
    if not task_of(task).classifies:
        return float(skm.r2_score(truth, predicted)) if len(truth) > 1 else float("nan")
    return float(skm.accuracy_score(truth, predicted.astype(truth.dtype)))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> dict:
    """Return accuracy and macro precision/recall/F1 (plus ROC AUC for two classes)."""
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision_macro": float(skm.precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "recall_macro": float(skm.recall_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }
    if proba is not None and proba.shape[1] == 2 and len(np.unique(y_true)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Return MSE, RMSE, MAE and R² in the target's own units."""
    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")}


def compute_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> dict:
    """Return the task's metrics; y_true/y_pred are class indices or target values."""
    if not task_of(task).classifies:
        return regression_metrics(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64))
    return classification_metrics(y_true, y_pred, proba)


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list) -> list[dict]:
    """Return precision, recall, F1 and support for each class."""
    labels = list(range(len(class_names)))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return [{"class": str(name), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
             "support": int(s[i])} for i, name in enumerate(class_names)]
