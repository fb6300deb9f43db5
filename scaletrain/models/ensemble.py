"""Several trained members averaged into one model: bagging (the cross-validation's fold
models, equal weights) or a blend (zero-config's different candidates, weights chosen on
held-out predictions: train/blend.py).

The members' probabilities are averaged, not their logits: that is what "the mean of the
members' predictions" means to a user, and it is what makes an ensemble better calibrated
than its members. The output stays in the members' own form (logits, a logit, a value) so
everything downstream — probabilities, thresholds, export — treats it as one model.
"""
from __future__ import annotations

import torch
from torch import nn

from scaletrain.tasks import task_of

AVERAGES = ("softmax", "sigmoid", "mean")  # multiclass logits, one binary logit, regression values


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], average: str, weights: list[float] | None = None):
        super().__init__()
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")
        if weights is not None and (len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"an ensemble of {len(members)} members needs as many non-negative weights, not {weights}")
        self.members, self.average = nn.ModuleList(members), average
        self.weights = [1.0 / len(members)] * len(members) if weights is None else [w / sum(weights) for w in weights]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return combine(torch.stack([member(*inputs).float() for member in self.members]), self.average, self.weights)


def combine(outputs: torch.Tensor, average: str, weights: list[float]) -> torch.Tensor:
    """The members' outputs (stacked on dim 0) as one output of the same form: the weighted
    mean of their probabilities (classes) or values (regression)."""
    w = torch.tensor(weights, dtype=outputs.dtype, device=outputs.device).view(-1, *[1] * (outputs.dim() - 1))
    if average == "softmax":  # log of the mean probability: softmax of it is that mean
        return torch.logsumexp(torch.log_softmax(outputs, dim=-1) + torch.log(w.clamp_min(1e-12)), dim=0)
    if average == "sigmoid":  # the logit of the mean probability
        p = (torch.sigmoid(outputs) * w).sum(dim=0).clamp(1e-7, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    return (outputs * w).sum(dim=0)


def average_for(task: str, n_out: int) -> str:
    """How a task's outputs are averaged: probabilities for classes (and for a regression's
    levels: the mixture's expected value is the weighted mean of the members'), values for
    regression."""
    if n_out == 1:
        return "sigmoid" if task_of(task).classifies else "mean"
    return "softmax"
