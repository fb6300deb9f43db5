"""What a task is: the facts about its targets that the rest of the package asks for, and what
it computes itself (its metrics and headline score), so that no code outside tasks/ compares a
task's name."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaletrain.errors import ConfigError

REGRESSION_LOSSES = ("mse", "mae", "huber")


@dataclass(frozen=True)
class Task:
    name: str
    classifies: bool          # targets are classes: stratified splits, probabilities, calibration
    headline: str             # the metric runs are chosen and reported by (higher is better)
    losses: tuple[str, ...]   # the losses it trains with, the default first
    boosting_objective: str   # LightGBM's objective for the boosted-trees candidate
    thresholded: bool = False  # one decision threshold is tuned (binary); class shifts otherwise

    @property
    def default_loss(self) -> str:
        return self.losses[0]

    def output_size(self, loss: str, n_classes: int) -> int:
        """How many numbers a model emits per row: one value, one logit (bce), or one per class."""
        return n_classes if self.classifies and loss != "bce" else 1

    def check_loss(self, loss: str) -> None:
        if loss in self.losses:
            return
        if loss in REGRESSION_LOSSES:
            raise ConfigError(f"loss '{loss}' is for regression; use cross_entropy (or bce for binary)")
        if self.classifies:
            raise ConfigError(f"loss '{loss}' needs a binary target; use cross_entropy for {self.name}")
        raise ConfigError(f"loss '{loss}' is for classification; use {', '.join(self.losses[:-1])} or "
                          f"{self.losses[-1]} for {self.name}")

    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None) -> dict:
        """Its metrics (scikit-learn's: what users already trust) from class indices or values."""
        raise NotImplementedError

    def score_outputs(self, outputs, y) -> float:
        """Its headline score from raw model outputs and encoded targets, as each epoch's
        validation reports it."""
        raise NotImplementedError
