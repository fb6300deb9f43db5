"""Assembles one training run from the resolved train config: loss, optimizer, batches, callbacks."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from scaletrain.errors import ConfigError
from scaletrain.parallel import distributed
from scaletrain.train import assembly, device
from scaletrain.train.assembly import LoopPlan
from scaletrain.train.budget import REPORT_SECONDS
from scaletrain.train.callbacks import EarlyStopping, Freeze, History
from scaletrain.train.loop import TrainState, train_loop
from scaletrain.train.losses import LossFn, training_loss
from scaletrain.train.optim import build_optimizer

EPOCH_VAL_ROWS = 2048     # validation rows scored per epoch when no early stopping needs them
ScoreFn = Callable[[torch.Tensor, torch.Tensor], float]  # (outputs, encoded targets) -> the task's score


class Validation:
    """validate(model) -> {val_loss, val_score}, timed: what it measures sizes the time kept
    for the final evaluation under a time limit."""

    def __init__(self, outputs_fn: Callable, inputs, y: torch.Tensor, loss_fn: LossFn, score: ScoreFn | None):
        self.outputs_fn, self.inputs, self.y, self.loss_fn, self.score = outputs_fn, inputs, y, loss_fn, score
        self.rows, self.seconds = 0, 0.0

    def __call__(self, model: nn.Module) -> dict:
        if len(self.y) == 0:
            return {}
        started = time.perf_counter()
        out = self.outputs_fn(self.inputs)
        y = self.y.to(out.device)
        result = {"val_loss": float(self.loss_fn(out, y))}
        if self.score is not None:
            result["val_score"] = self.score(out, y)
        self.rows += len(y)
        self.seconds += time.perf_counter() - started
        return result

    def probe(self, rows: int = 256) -> None:
        """A first measure of validation speed, before training."""
        started = time.perf_counter()
        self.outputs_fn(tuple(x[:rows] for x in self.inputs))
        self.rows, self.seconds = min(rows, len(self.y)), time.perf_counter() - started

    def seconds_for(self, rows: int) -> float:
        return self.seconds / max(self.rows, 1) * rows


def epoch_subset(val_inputs, val_y: torch.Tensor, early_stopping: int):
    """The validation rows scored each epoch. With nothing stopping on the score, which then
    only draws the learning curve, a fixed subset keeps evaluation from stalling training
    (Fashion-MNIST: 2.5 s of ~32 s an epoch on all 9,000 rows); final metrics use every row."""
    if early_stopping or len(val_y) <= EPOCH_VAL_ROWS:
        return val_inputs, val_y
    keep = torch.randperm(len(val_y), generator=torch.Generator().manual_seed(0))[:EPOCH_VAL_ROWS]
    return tuple(x[keep] for x in val_inputs), val_y[keep]


@dataclass(frozen=True)
class ValidationSet:
    """The rows a fit validates on, and how to score them."""

    outputs_fn: Callable          # inputs -> the model's outputs, batched and on the right device
    inputs: tuple
    y: torch.Tensor
    score: ScoreFn | None = None


@dataclass(frozen=True)
class LossChoice:
    """The training loss: the config's for the task, or one that replaces it (distillation's,
    on packed targets)."""

    task: str
    class_counts: torch.Tensor | None = None
    replaced: LossFn | None = None
    levels: torch.Tensor | None = None  # a regression's levels (train.loss=levels)

    def step(self, t) -> LossFn:
        return self.replaced or training_loss(t, self.task, self.class_counts, levels=self.levels)

    def per_row(self, t) -> LossFn:
        return training_loss(t, self.task, self.class_counts, reduction="none", levels=self.levels)


def fit_model(model: nn.Module, batches, t, loss: LossChoice, val: ValidationSet,
              plan: LoopPlan) -> tuple[TrainState, History, EarlyStopping | None]:
    """Train the model in place on `batches` (TensorBatches or ShardBatches); return the final
    state, the history and the early stopper.

    A limited budget bounds training, the time already spent counted, with the final
    evaluation's time kept free (and the report's, when checkpoints show a run directory).
    """
    loss_fn = loss.step(t)
    wrapped = device.parallel(model, t.device, t.fsdp)  # before the optimizer: FSDP replaces parameters
    optimizer = build_optimizer(model, t.optimizer, t.lr, t.momentum, t.weight_decay, t.layer_decay)
    privacy, step_loss = None, loss_fn
    if t.privacy.epsilon is not None:  # DP-SGD: each row's gradient clipped, noise added; Poisson batches
        from scaletrain.train.private import check_private, make_private

        check_private(t, distributed.world().active, loss.replaced is not None)
        wrapped, optimizer, batches, privacy, step_loss = make_private(model, optimizer, batches, t, t.epochs,
                                                                       loss.per_row(t))
    validation = Validation(val.outputs_fn, *epoch_subset(val.inputs, val.y, t.early_stopping), loss_fn, val.score)
    history = History()
    stopper = EarlyStopping(t.early_stopping, t.monitor) if t.early_stopping else None
    own = [history] + ([stopper] if stopper else [])
    if t.freeze and distributed.world().active:
        raise ConfigError("train.freeze with several ranks: not supported (DistributedDataParallel needs every "
                          "parameter's gradient each step); set train.freeze=0 or train in one process")
    stateful = {"history": history, **({"early_stopping": stopper} if stopper else {}),
                **({"privacy": privacy} if privacy else {})}
    # Under FSDP each rank holds a shard of the weights: no mid-run checkpoints (the final model
    # is gathered and saved)
    listed = assembly.callbacks(plan, own, stateful, checkpoints=not (t.fsdp and distributed.world().active),
                                after_restore=(Freeze(model, t.freeze),) if t.freeze else (),
                                after_training=_after_training(plan, validation, final_rows(model, len(val.y))))
    settings = assembly.loop_settings(t, plan.budget, clip=0.0 if privacy else None,  # DP clips per row
                                      compile_ok=privacy is None)
    state = train_loop(model, batches, step_loss, optimizer, settings, validation, listed, wrapped)
    if privacy is not None:
        state.privacy = privacy.summary()
        wrapped.remove_hooks()  # the model goes on to predict and explain as a plain module
    return state, history, stopper


def final_rows(model: nn.Module, val_rows: int) -> int:
    """Rows the command scores once training ends: validation and, as its likely size, test; a
    conv net whose test-time shifts are still to be decided also scores validation plainly, and
    then validation and test through its views (the fit's later steps reuse the validation
    outputs: Run.outputs_kept), with one more pass of margin (a 10-minute Fashion-MNIST run
    overran by 3 s with none)."""
    if getattr(model, "shifted_views", False) is not None:
        return 2 * val_rows
    return val_rows * (1 + 3 * model.VIEWS)


def _after_training(plan: LoopPlan, validation: Validation, final_rows: int) -> Callable[[], float] | None:
    """The seconds the command still needs once training ends, for the time limit to keep free:
    validation's measured speed (probed before training, then every epoch) times the rows still
    to score (validation and, as its likely size, as many test rows), plus the report when a
    run directory is written."""
    if not plan.budget.limited or not len(validation.y):
        return None
    validation.probe()
    report = REPORT_SECONDS if plan.checkpointing is not None else 0.0
    return lambda: plan.budget.after_training(validation.seconds_for(final_rows), report)
