"""Regression: one number per row, standardized for training, scored by R²."""
from __future__ import annotations

import math

import numpy as np

from scaletrain.tasks.base import REGRESSION_LOSSES, Task


class Regression(Task):
    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> dict:
        """MSE, RMSE, MAE and R² in the target's own units."""
        from sklearn import metrics as skm

        y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
        mse = float(skm.mean_squared_error(y_true, y_pred))
        return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(skm.mean_absolute_error(y_true, y_pred)),
                "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")}

    def score_outputs(self, outputs, y) -> float:
        """R² (the same on standardized targets)."""
        from sklearn import metrics as skm

        truth, predicted = y.detach().cpu().numpy(), outputs.squeeze(-1).detach().float().cpu().numpy()
        return float(skm.r2_score(truth, predicted)) if len(truth) > 1 else float("nan")


REGRESSION = Regression("regression", classifies=False, headline="r2", losses=REGRESSION_LOSSES,
                        boosting_objective="regression")
