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
    score_label: str = ""      # what score_outputs measures, as the learning curves name it
    regime: str | None = None  # a module whose train(cfg, data, out, ...) fits this task instead of the row pipeline
    models: tuple[str, ...] = ()  # zero-config's candidates for it on a table, before the boosted trees ((): the table's)
    two_classes: bool = False  # its target must hold exactly two values

    def piece_relevance(self, counts, n_out: int):
        """(pieces, n_out) how strongly each text piece tells the outputs apart, from `counts`
        (pieces, classes): the training rows of each class that hold the piece; None where the
        task has no such measure (its text is not weighed)."""
        return None

    @property
    def default_loss(self) -> str:
        return self.losses[0]

    def auto_loss(self, levels: int) -> str:
        """The loss zero-config trains with (`levels`: the points of a regression target's
        rating scale, Prepared.scale_points; 0 where it is not one)."""
        return self.default_loss

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

    def score_outputs(self, outputs, y, target: dict | None = None) -> float:
        """Its headline score from raw model outputs and encoded targets, as each epoch's
        validation reports it (`target`: the fitted target state, where outputs need it to be read)."""
        raise NotImplementedError

    # ------------------------------------------------------------ decisions (Run, ONNX export, serve)
    def decide(self, outputs, target: dict, loss: str) -> tuple:
        """(decisions, probabilities or None) from raw model outputs, as torch tensors: what
        `predict` and the exported graph (traced from this same code) return. `target` is the
        run's fitted target state (its classes or scale, and what validation tuned)."""
        raise NotImplementedError

    def decode(self, target: dict, decisions: np.ndarray) -> np.ndarray:
        """Decisions in the target's own values (a class label, a number in its units)."""
        raise NotImplementedError

    def truth(self, target: dict, encoded: np.ndarray) -> np.ndarray:
        """Encoded training targets as the metrics compare them with decisions."""
        return encoded

    def output_columns(self, target: dict, decisions: np.ndarray, proba: np.ndarray | None) -> dict:
        """The columns `predict` adds to its input's rows."""
        raise NotImplementedError

    def answer(self, target: dict, decisions: np.ndarray, proba: np.ndarray | None) -> dict:
        """A served prediction's JSON fields (JSON-native values)."""
        raise NotImplementedError

    def graph_outputs(self) -> list[str]:
        """The traced graph's output names, in the order `decide` returns them."""
        raise NotImplementedError

    def card_outputs(self, target: dict, target_column: str | None) -> list[dict]:
        """The exported model's outputs, described for its model card."""
        raise NotImplementedError
