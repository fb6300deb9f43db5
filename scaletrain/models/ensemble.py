"""Bagging: several trained members (the cross-validation's fold models) averaged into one model.

The members' probabilities are averaged, not their logits: that is what "the mean of the
members' predictions" means to a user, and it is what makes an ensemble better calibrated
than its members. The output stays in the members' own form (logits, a logit, a value) so
everything downstream — probabilities, thresholds, export — treats it as one model.
"""
from __future__ import annotations

import math

import torch
from torch import nn

AVERAGES = ("softmax", "sigmoid", "mean")  # multiclass logits, one binary logit, regression values


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], average: str):
        super().__init__()
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")
        self.members, self.average = nn.ModuleList(members), average

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(*inputs).float() for member in self.members])
        if self.average == "softmax":  # log of the mean probability: softmax of it is that mean
            return torch.logsumexp(torch.log_softmax(outputs, dim=-1), dim=0) - math.log(len(self.members))
        if self.average == "sigmoid":  # the logit of the mean probability
            p = torch.sigmoid(outputs).mean(dim=0).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        return outputs.mean(dim=0)


def average_for(task: str, n_out: int) -> str:
    """How a task's outputs are averaged: probabilities for classes, values for regression."""
    if task == "regression":
        return "mean"
    return "sigmoid" if n_out == 1 else "softmax"
