"""Losses by name, and the map from model outputs to predictions and probabilities."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from scaletrain.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CLASSIFICATION_LOSSES = {"cross_entropy", "bce"}
REGRESSION_LOSSES = {"mse", "mae", "huber"}


def output_size(task: str, loss: str, n_classes: int) -> int:
    """Return how many numbers the model emits per row."""
    return 1 if task == "regression" or loss == "bce" else n_classes


def build_loss(name: str, task: str, label_smoothing: float = 0.0,
               class_weights: torch.Tensor | None = None) -> LossFn:
    """Return loss(outputs, targets) for the named loss, checked against the task."""
    if task == "regression" and name not in REGRESSION_LOSSES:
        raise ConfigError(f"loss '{name}' is for classification; use mse, mae or huber for regression")
    if task != "regression" and name not in CLASSIFICATION_LOSSES:
        raise ConfigError(f"loss '{name}' is for regression; use cross_entropy (or bce for binary)")
    if name == "bce" and task != "binary":
        raise ConfigError("loss 'bce' needs a binary target; use cross_entropy for multiclass")
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out.float(), y, weight=class_weights, label_smoothing=label_smoothing)
    if name == "bce":
        pos_weight = None if class_weights is None else (class_weights[1] / class_weights[0]).view(1)

        def bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = y.float() * (1 - label_smoothing) + 0.5 * label_smoothing
            return F.binary_cross_entropy_with_logits(out.float().squeeze(-1), target, pos_weight=pos_weight)
        return bce
    regression = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}
    return lambda out, y: regression[name](out.float().squeeze(-1), y)


def outputs_to_proba(outputs: torch.Tensor, task: str, loss: str) -> torch.Tensor:
    """Return class probabilities (n, classes) from model outputs."""
    if loss == "bce":
        p = torch.sigmoid(outputs.float().squeeze(-1))
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(outputs.float(), dim=1)


def balanced_weights(counts: torch.Tensor) -> torch.Tensor:
    """Return n / (k * count) per class from class counts, as scikit-learn's class_weight='balanced'."""
    counts = counts.float().clamp(min=1)
    return counts.sum() / (len(counts) * counts)


def training_loss(t, task: str, class_counts: torch.Tensor | None) -> LossFn:
    """The loss a train config names, with balanced class weights where it asks for them."""
    weights = None
    if t.class_weight == "balanced" and class_counts is not None:
        weights = balanced_weights(class_counts).to(t.device)
    return build_loss(t.loss, task, t.label_smoothing, weights)
