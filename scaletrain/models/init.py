"""Weight initialisation schemes, applied to every Linear and Conv layer (biases start at 0)."""
from __future__ import annotations

import math

import torch
from torch import nn


def _fan_in(weight: torch.Tensor) -> int:
    return int(weight[0].numel())


def _uniform(w: torch.Tensor) -> None:
    # U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the classic LeCun-style uniform range
    bound = 1.0 / math.sqrt(_fan_in(w))
    nn.init.uniform_(w, -bound, bound)


def _normal(w: torch.Tensor) -> None:
    nn.init.normal_(w, 0.0, 1.0 / math.sqrt(_fan_in(w)))


INIT_SCHEMES = {
    "uniform": _uniform,
    "normal": _normal,
    "xavier": nn.init.xavier_uniform_,
    "kaiming": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
}


def apply_init(model: nn.Module, scheme: str) -> None:
    """Re-initialise the weights of all Linear/Conv layers of a model with a named scheme."""
    init = INIT_SCHEMES[scheme]
    for module in model.modules():
        # a skeleton on the meta device (runcheck's shape check) has no values to set, and
        # normal_ there goes through torch's reference ops, which import its compiler (1.2 s)
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d)) and module.weight.numel() and not module.weight.is_meta:
            init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
