"""What binary and multiclass classification share: their metrics from class indices, and the
decision from outputs (probabilities, then the tuned threshold or class shifts)."""
from __future__ import annotations

import numpy as np

from scaletrain.tasks.base import Task


def probabilities(outputs, loss: str):
    """Class probabilities (n, classes) from model outputs: one logit (bce) or one per class."""
    import torch

    if loss == "bce":
        p = torch.sigmoid(outputs.float().squeeze(-1))
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(outputs.float(), dim=1)


class Classification(Task):
    def piece_relevance(self, counts, n_out: int):
        """Naive Bayes log-count ratios (Wang & Manning 2012, NBSVM), class against the rest, each
        piece seen once more in both (Laplace): |log((p/|p|) / (q/|q|))|. One logit (bce): class 1's."""
        import torch

        inside = counts + 1.0
        outside = counts.sum(1, keepdim=True) - counts + 1.0  # the rows of the other classes
        ratio = (torch.log(inside / inside.sum(0)) - torch.log(outside / outside.sum(0))).abs()
        return ratio[:, 1:2] if n_out == 1 else ratio

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

    def score_outputs(self, outputs, y, target: dict | None = None) -> float:
        """Accuracy of the argmax (or of one logit's sign: bce): the rows right over the rows, as
        scikit-learn's accuracy_score counts them, without its input checks (1.8 ms a call, each
        epoch's validation of a small table)."""
        predicted = (outputs.squeeze(-1) > 0).long() if outputs.shape[1] == 1 else outputs.argmax(1)
        return int((predicted.detach().cpu() == y.detach().cpu().long()).sum()) / max(len(y), 1)

    def decide(self, outputs, target: dict, loss: str) -> tuple:
        """(class index, probabilities): the tuned threshold (binary) or class-prior shifts
        (multiclass) where validation set them, else the most probable class."""
        import torch

        if target.get("temperature"):  # calibrated on validation rows (evaluate/calibration.py)
            outputs = outputs / target["temperature"]
        proba = probabilities(outputs, loss)
        if target.get("threshold") is not None:
            return (proba[:, 1] >= target["threshold"]).long(), proba
        if target.get("class_bias") is not None:
            shifts = torch.tensor(target["class_bias"], dtype=torch.float64)
            return (torch.log(proba.clamp(1e-12, 1.0)).double() + shifts).argmax(dim=1), proba
        return proba.argmax(dim=1), proba

    def decode(self, target: dict, decisions: np.ndarray) -> np.ndarray:
        return np.asarray(target["classes"], dtype=object)[decisions]

    def output_columns(self, target: dict, decisions: np.ndarray, proba: np.ndarray | None) -> dict:
        columns = {"prediction": self.decode(target, decisions)}
        columns.update({f"proba_{name}": proba[:, i] for i, name in enumerate(target["classes"])})
        return columns

    def answer(self, target: dict, decisions: np.ndarray, proba: np.ndarray | None) -> dict:
        names = [str(c) for c in target["classes"]]
        return {"predictions": self.decode(target, decisions).tolist(),
                "probabilities": [dict(zip(names, map(float, p))) for p in proba]}

    def graph_outputs(self) -> list[str]:
        return ["index", "probabilities"]

    def card_outputs(self, target: dict, target_column: str | None) -> list[dict]:
        return [{"name": "label", "shape": ["batch"], "what": "the predicted class, in the target's own values"},
                {"name": "probabilities", "type": "float32", "shape": ["batch", len(target["classes"])],
                 "what": "each class's probability, in the order of `classes`"}]
