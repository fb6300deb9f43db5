"""What an explanation attributes of a model's outputs: a class's logit against the others', a
value, or for a regression by level (train.loss=levels) the value its levels' softmax predicts
— not one level's logit, which says nothing of the rating a user sees."""
from __future__ import annotations

import torch
from torch import nn

from scaletrain.run import Run
from scaletrain.tasks import task_of
from scaletrain.tasks.regression import expected_value


def by_level(run: Run) -> bool:
    return run.spec.n_out > 1 and not task_of(run.task).classifies


def readout_of(run: Run):
    """What is explained of a row's outputs (see above), as a function of them."""
    if not by_level(run):
        return contrasted
    target = run.preprocess["target"]
    return lambda out: _value(out, target)


def contrasted(out: torch.Tensor) -> torch.Tensor:
    """Each class's output as its logit minus the mean of the others' (for two classes the
    log-odds). A softmax leaves a shift common to every logit unidentified: a column that moved
    all of them together would get credit for changing nothing."""
    if out.shape[1] == 1:
        return out
    return out - (out.sum(dim=1, keepdim=True) - out) / (out.shape[1] - 1)


class ValueOf(nn.Module):
    """A regression by level as a function of its inputs: the (standardized) value it predicts."""

    def __init__(self, model: nn.Module, target: dict):
        super().__init__()
        self.model, self.target = model, target

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return _value(self.model(*inputs), self.target)


def _value(out: torch.Tensor, target: dict) -> torch.Tensor:
    return expected_value(out, target).to(out.dtype)[:, None]


def explained_model(run: Run) -> nn.Module:
    """The function heatmaps explain: the run's model, or a regression by level's value."""
    return ValueOf(run.model, run.preprocess["target"]).eval() if by_level(run) else run.model
