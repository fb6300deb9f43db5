"""Optimizers by name, and learning-rate schedules as functions of training progress."""
from __future__ import annotations

import math

import torch
from torch import nn

from scaletrain.errors import ConfigError
from scaletrain.train.device import fused_optimizer


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Return groups where only weight matrices/kernels decay (biases and norms do not)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """Return the named optimizer; "gd" is plain SGD over full batches (the batch size says so)."""
    groups = param_groups(model, weight_decay)
    fused = fused_optimizer(model)  # one kernel for all parameters on CUDA instead of one per tensor
    builders = {
        "gd": lambda: torch.optim.SGD(groups, lr=lr),
        "sgd": lambda: torch.optim.SGD(groups, lr=lr),
        "momentum": lambda: torch.optim.SGD(groups, lr=lr, momentum=momentum),
        "nesterov": lambda: torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True),
        "adam": lambda: torch.optim.Adam(groups, lr=lr, **fused),
        "adamw": lambda: torch.optim.AdamW(groups, lr=lr, **fused),
    }
    if name not in builders:
        raise ConfigError(f"unknown optimizer '{name}'; choose one of {sorted(builders)}")
    return builders[name]()


def lr_factor(progress: float, schedule: str, warmup: float, milestones: list[float], gamma: float) -> float:
    """Return the multiplier of the base learning rate at `progress` in [0, 1] of training.

    Schedules take progress rather than a step count so that a time limit can drive them:
    the loop passes max(steps done / planned, seconds spent / limit), and the schedule
    anneals on time whichever ends first.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle":
        peak = warmup or 0.25
        if progress < peak:  # linear rise from 1/25 of the peak, as in Smith's one-cycle
            return 0.04 + 0.96 * progress / peak
        return 0.5 * (1 + math.cos(math.pi * (progress - peak) / (1 - peak))) * 0.9999 + 1e-4
    if warmup and progress < warmup:
        return (progress / warmup) if progress > 0 else 1.0 / 1000
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        rest = (progress - warmup) / max(1 - warmup, 1e-9)
        return 0.5 * (1 + math.cos(math.pi * rest))
    if schedule == "step":
        return gamma ** sum(progress >= m for m in milestones)
    raise ConfigError(f"unknown schedule '{schedule}'; choose constant, step, cosine or onecycle")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
