"""Optimizers by name, and learning-rate schedules as functions of training progress."""
from __future__ import annotations

import math

import torch
from torch import nn

from scaletrain.errors import ConfigError
from scaletrain.train.device import fused_optimizer


def layer_depth(name: str, layers: int) -> int:
    """A Transformer parameter's depth: embeddings 0, block i at i + 1, the rest (head) above."""
    if ".blocks." in f".{name}":
        return int(name.split("blocks.", 1)[1].split(".", 1)[0]) + 1
    if any(part in name for part in ("encoder.tokens.", "encoder.positions.", "encoder.embedding_norm.")):
        return 0
    return layers + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """Return groups where only weight matrices/kernels decay (biases and norms do not); with
    layer_decay below 1, a Transformer's layers are grouped too, each learning at layer_decay
    times the rate of the one above (ELECTRA's and BEiT's fine-tuning rule: the pretrained
    lower layers, already general, move least)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    layers = 1 + max((layer_depth(n, 0) - 1 for n, _ in named if ".blocks." in f".{n}"), default=-1)
    groups: dict[tuple, dict] = {}
    for name, p in named:
        scale = layer_decay ** (layers + 1 - layer_depth(name, layers)) if layer_decay < 1 and layers else 1.0
        decays = p.dim() >= 2
        group = groups.setdefault((decays, scale), {"params": [], "weight_decay": weight_decay if decays else 0.0,
                                                    "lr_scale": scale})
        group["params"].append(p)
    return sorted(groups.values(), key=lambda g: (-g["weight_decay"], -g["lr_scale"]))


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    layer_decay: float = 1.0) -> torch.optim.Optimizer:
    """Return the named optimizer; "gd" is plain SGD over full batches (the batch size says so)."""
    groups = param_groups(model, weight_decay, layer_decay)
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
        group["lr"] = lr * group.get("lr_scale", 1.0)
