"""Losses by name, and the map from model outputs to predictions and probabilities."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from scaletrain.errors import ConfigError
from scaletrain.tasks import task_of

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def output_size(task: str, loss: str, n_classes: int) -> int:
    """Return how many numbers the model emits per row."""
    return task_of(task).output_size(loss, n_classes)


def build_loss(name: str, task: str, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None,
               reduction: str = "mean", levels: torch.Tensor | None = None) -> LossFn:
    """Return loss(outputs, targets) for the named loss, checked against the task; reduction
    "none" gives each row's (DP-SGD clips per row). `levels`: a regression target's whole-number
    values, standardized (tasks/regression.level_values), which the levels loss classifies."""
    task_of(task).check_loss(name)
    if name == "levels":
        if levels is None:
            raise ConfigError("train.loss=levels needs a target of whole numbers spanning a few values "
                              "(ratings 1..5); this one is not: use mse")
        return lambda out, y: F.cross_entropy(out.float(), nearest_level(y, levels), reduction=reduction)
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out.float(), y, weight=class_weights, label_smoothing=label_smoothing,
                                              reduction=reduction)
    if name == "bce":
        pos_weight = None if class_weights is None else (class_weights[1] / class_weights[0]).view(1)

        def bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = y.float() * (1 - label_smoothing) + 0.5 * label_smoothing
            return F.binary_cross_entropy_with_logits(out.float().squeeze(-1), target, pos_weight=pos_weight,
                                                      reduction=reduction)
        return bce
    regression = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}
    return lambda out, y: regression[name](out.float().squeeze(-1), y, reduction=reduction)


def nearest_level(y: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Each standardized target's level index (the nearest: float32 rounding moves none)."""
    return (y.double()[:, None] - levels.to(y.device)[None, :]).abs().argmin(dim=1)


def balanced_weights(counts: torch.Tensor) -> torch.Tensor:
    """Return n / (k * count) per class from class counts, as scikit-learn's class_weight='balanced'."""
    counts = counts.float().clamp(min=1)
    return counts.sum() / (len(counts) * counts)


def training_loss(t, task: str, class_counts: torch.Tensor | None, reduction: str = "mean",
                  levels: torch.Tensor | None = None) -> LossFn:
    """The loss a train config names, with balanced class weights where it asks for them."""
    weights = None
    if t.class_weight == "balanced" and class_counts is not None:
        weights = balanced_weights(class_counts).to(t.device)
    return build_loss(t.loss, task, t.label_smoothing, weights, reduction, levels)


def distillation_loss(task: str, loss: str, temperature: float, alpha: float,
                      levels: torch.Tensor | None = None) -> LossFn:
    """Hinton et al.'s distillation loss on packed targets (column 0 the label, the rest the
    teacher's outputs): alpha·T²·KL(teacher ‖ student at temperature T) + (1 − alpha)·the
    task's loss on the labels (T² keeps the soft part's gradients on the hard part's scale).
    Regression: alpha·MSE to the teacher's value + (1 − alpha)·MSE to the label; by level
    (train.loss=levels), as for classes, the label's level the hard target."""
    def distill(out: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        out, y, teacher = out.float(), packed[:, 0], packed[:, 1:].float()
        if not task_of(task).classifies and loss != "levels":
            value = out.squeeze(-1)
            return alpha * F.mse_loss(value, teacher.squeeze(-1)) + (1 - alpha) * F.mse_loss(value, y)
        if loss == "bce":  # one logit: the two classes' logits are (0, z)
            hard = F.binary_cross_entropy_with_logits(out.squeeze(-1), y)
            out, teacher = F.pad(out, (1, 0)), F.pad(teacher, (1, 0))
        else:
            hard = F.cross_entropy(out, y.long() if loss != "levels" else nearest_level(y, levels))
        soft = F.kl_div(F.log_softmax(out / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                        log_target=True, reduction="batchmean")
        return alpha * temperature ** 2 * soft + (1 - alpha) * hard
    return distill
