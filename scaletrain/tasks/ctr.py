"""Click-through prediction: a binary table (clicked or not) whose columns include ids of high
cardinality (users, items, ads). Its own models — Wide & Deep and DeepFM (models/clicks.py) —
train on one logit (bce), and it is judged as click-through rates are: by ROC AUC and log loss,
the probability itself being the product (a ranking or a bid is computed from it)."""
from __future__ import annotations

import numpy as np

from scaletrain.tasks.classification import Classification


class ClickThrough(Classification):
    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> dict:
        from sklearn import metrics as skm

        out = super().metrics(y_true, y_pred, proba)
        if proba is not None and proba.shape[1] == 2 and len(np.unique(y_true)) == 2:
            out["log_loss"] = float(skm.log_loss(y_true, np.clip(proba[:, 1], 1e-7, 1 - 1e-7)))
        return out

    def score_outputs(self, outputs, y, target: dict | None = None) -> float:
        """ROC AUC of the click logit (or of the second class's margin)."""
        from sklearn import metrics as skm

        margin = outputs[:, -1] - (outputs[:, 0] if outputs.shape[1] == 2 else 0)
        truth = y.detach().cpu().numpy()
        if len(np.unique(truth)) < 2:
            return 0.5
        return float(skm.roc_auc_score(truth, margin.detach().float().cpu().numpy()))


CTR = ClickThrough("ctr", classifies=True, headline="roc_auc", losses=("bce", "cross_entropy"),
                   boosting_objective="binary", thresholded=True, score_label="AUC",
                   models=("deepfm", "wide_deep"), two_classes=True)
