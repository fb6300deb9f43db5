"""What binary and multiclass classification share: their metrics, from class indices."""
from __future__ import annotations

import numpy as np

from scaletrain.tasks.base import Task


class Classification(Task):
    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> dict:
        """Accuracy and macro precision/recall/F1 (plus ROC AUC for two classes)."""
        from sklearn import metrics as skm

        out = {
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "precision_macro": float(skm.precision_score(y_true, y_pred, average="macro", zero_division=0)),
            "recall_macro": float(skm.recall_score(y_true, y_pred, average="macro", zero_division=0)),
            "f1_macro": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }
        if proba is not None and proba.shape[1] == 2 and len(np.unique(y_true)) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
        return out

    def score_outputs(self, outputs, y) -> float:
        """Accuracy of the argmax (or of one logit's sign: bce)."""
        from sklearn import metrics as skm

        predicted = (outputs.squeeze(-1) > 0).long() if outputs.shape[1] == 1 else outputs.argmax(1)
        truth, predicted = y.detach().cpu().numpy(), predicted.detach().float().cpu().numpy()
        return float(skm.accuracy_score(truth, predicted.astype(truth.dtype)))
