"""Distillation into a smaller student of the same family, and the short fine-tune after
pruning: both train on the run's training rows against the original model's outputs
(train.losses.distillation_loss), with scaletrain's own training loop."""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from scaletrain.config import Config
from scaletrain.data.prepared import Prepared
from scaletrain.errors import ExportError
from scaletrain.models.registry import ModelSpec, build_model
from scaletrain.run import Run
from scaletrain.tasks.regression import level_values
from scaletrain.train import device
from scaletrain.train.assembly import LoopPlan
from scaletrain.train.budget import Budget
from scaletrain.train.losses import distillation_loss
from scaletrain.train.setup import placed_model, seed_everything, training_batches
from scaletrain.train.trainer import LossChoice, ValidationSet, fit_model

TEMPERATURE = 2.0  # soft targets: the teacher's probabilities at this temperature
ALPHA = 0.7        # the soft part's share of the loss; the labels' is the rest
SIZE_KNOBS = {"mlp": "hidden", "cnn": "width", "resnet": "width", "rnn": "width", "conv1d": "width", "transformer": "width"}


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def student_config(teacher: Run, share: float) -> Config:
    """The teacher's config with the model narrowed until it has at most `share` of the
    teacher's parameters (widths shrunk by steps of 2^(1/4))."""
    name = teacher.config.model.name
    if name not in SIZE_KNOBS:
        raise ExportError(f"a {name} model has no smaller form to distill into; --distill is for "
                          f"{', '.join(SIZE_KNOBS)} runs")
    budget = share * parameters(teacher.model)
    m = teacher.config.model
    hidden = list(m.hidden) if m.hidden is not None else [m.width or 128] * (m.depth or 2)
    for step in range(1, 40):
        scale = 2 ** (-step / 4)
        cfg = teacher.config.thawed()
        if SIZE_KNOBS[name] == "hidden":
            cfg.model.hidden = [max(2, round(h * scale)) for h in hidden]
        else:
            cfg.model.width = max(2, round((m.width or (16 if name != "transformer" else 256)) * scale))
            if name == "transformer":
                cfg.model.ff, cfg.model.heads = 4 * cfg.model.width, math.gcd(m.heads or 4, cfg.model.width)
        if parameters(build_model(replace(teacher.spec), cfg.model)) <= budget:
            return cfg
    raise ExportError(f"no {name} this narrow has at most {share:.0%} of the teacher's parameters")


def packed_targets(teacher: Run, inputs: tuple, y: torch.Tensor) -> torch.Tensor:
    """Labels in column 0, the teacher's outputs after them (what distillation_loss reads)."""
    return torch.cat([y.float().unsqueeze(1), teacher.outputs(inputs).float()], dim=1)


def train_student(teacher: Run, cfg: Config, prepared: Prepared, budget: Budget, model: torch.nn.Module | None = None,
                  spec: ModelSpec | None = None, verbose: bool = False) -> Run:
    """Train `model` (default: a new one as `cfg` names) against the teacher, within `budget`;
    return its Run."""
    if prepared.shard_url is not None:
        raise ExportError("compress trains on the run's training rows in memory; these are streamed from shards")
    cfg = cfg.thawed()
    cfg.data.augment = False  # the teacher's outputs are those of the rows as they are
    cfg.train.monitor, cfg.train.ensemble = "val_loss", "off"
    cfg.model.init_from = None
    seed_everything(cfg.train.seed)
    if model is None:
        model, spec = placed_model(cfg, prepared)
    else:
        model = device.place(model, cfg.train.device)
    packed = replace(prepared, train_y=packed_targets(teacher, prepared.train_inputs, prepared.train_y),
                     val_y=packed_targets(teacher, prepared.val_inputs, prepared.val_y))
    run = Run(cfg, model, spec, prepared.preprocess | {"target": teacher.preprocess["target"]})
    loss = LossChoice(prepared.task, replaced=distillation_loss(prepared.task, cfg.train.loss, TEMPERATURE, ALPHA,
                                                                level_values(prepared.target)))
    plan = LoopPlan(budget, progress="training" if verbose else None)
    _, history, _ = fit_model(model, training_batches(cfg, packed), cfg.train, loss,
                              ValidationSet(run.outputs, packed.val_inputs, packed.val_y), plan)
    run.model.eval()
    run.history = history.rows
    return run
