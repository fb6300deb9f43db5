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

    def decide(self, outputs, target: dict, loss: str) -> tuple:
        """The value in the target's units (training standardized it), kept within the range of
        the training targets (runs from before it was stored: as it is). A linear model's line
        runs past a bounded target's ends: clothing reviews → rating (1 to 5), 12% of the test
        predictions above 5, R² 0.608 → 0.618 kept within the range."""
        value = outputs.squeeze(-1).double() * target["std"] + target["mean"]
        if target.get("lo") is not None and target.get("hi") is not None:
            value = value.clamp(target["lo"], target["hi"])
        return value, None

    def decode(self, target: dict, decisions: np.ndarray) -> np.ndarray:
        return decisions

    def truth(self, target: dict, encoded: np.ndarray) -> np.ndarray:
        return encoded.astype(np.float64) * target["std"] + target["mean"]

    def output_columns(self, target: dict, decisions: np.ndarray, proba: np.ndarray | None) -> dict:
        return {"prediction": decisions}

    def answer(self, target: dict, decisions: np.ndarray, proba: np.ndarray | None) -> dict:
        return {"predictions": [float(v) for v in decisions]}

    def graph_outputs(self) -> list[str]:
        return ["value"]

    def card_outputs(self, target: dict, target_column: str | None) -> list[dict]:
        return [{"name": "value", "type": "float64", "shape": ["batch"], "what": f"the predicted {target_column}"}]


REGRESSION = Regression("regression", classifies=False, headline="r2", losses=REGRESSION_LOSSES,
                        boosting_objective="regression", score_label="R²")
