"""Assembles one training run from the resolved train config: loss, optimizer, batches, callbacks."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from scaletrain import distributed
from scaletrain.budget import REPORT_SECONDS, Budget
from scaletrain.errors import ConfigError
from scaletrain.train import device
from scaletrain.train.callbacks import EarlyStopping, Freeze, History, ProgressBar, TimeLimit
from scaletrain.train.checkpoint import Checkpoint
from scaletrain.train.loop import Callback, LoopSettings, TrainState, train_loop
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


def fit_model(model: nn.Module, batches, class_counts: torch.Tensor | None,
              outputs_fn: Callable, val_inputs, val_y: torch.Tensor, t, ckpt, task: str,
              generators: dict[str, torch.Generator] | None = None, checkpoint_dir: Path | None = None,
              verbose: bool = True, config: dict | None = None, resume: bool = False,
              budget: Budget | None = None, callbacks: list[Callback] | None = None,
              score: ScoreFn | None = None, loss_fn: LossFn | None = None) -> tuple[TrainState, History, EarlyStopping | None]:
    """Train the model in place on `batches` (TensorBatches or ShardBatches); return the final
    state, the history and the early stopper.

    With `resume`, training continues from the newest valid checkpoint in checkpoint_dir. A
    limited `budget` bounds training, the time already spent counted, with the final
    evaluation's time kept free (and the report's, when a run directory is written). `loss_fn`
    replaces the config's loss (distillation's, on packed targets).
    """
    given_loss, loss_fn = loss_fn is not None, loss_fn or training_loss(t, task, class_counts)
    wrapped = device.parallel(model, t.device, t.fsdp)  # before the optimizer: FSDP replaces parameters
    optimizer = build_optimizer(model, t.optimizer, t.lr, t.momentum, t.weight_decay, t.layer_decay)
    privacy, step_loss = None, loss_fn
    if t.privacy.epsilon is not None:  # DP-SGD: each row's gradient clipped, noise added; Poisson batches
        from scaletrain.train.private import check_private, make_private

        check_private(t, distributed.world().active, given_loss)
        wrapped, optimizer, batches, privacy, step_loss = make_private(
            model, optimizer, batches, t, t.epochs, training_loss(t, task, class_counts, reduction="none"))
    validation = Validation(outputs_fn, *epoch_subset(val_inputs, val_y, t.early_stopping), loss_fn, score)
    history = History()
    stopper = EarlyStopping(t.early_stopping, t.monitor) if t.early_stopping else None
    budget = budget or Budget(None)
    listed = [history] + ([stopper] if stopper else []) + _time_limit(budget, validation, 2 * len(val_y),
                                                                      checkpoint_dir is not None)
    if checkpoint_dir is not None and ckpt.keep > 0 and not (t.fsdp and distributed.world().active):
        # Under FSDP each rank holds a shard of the weights: no mid-run checkpoints (the final
        # model is gathered and saved). Every rank restores from what rank 0 wrote.
        stateful = {"history": history, **({"early_stopping": stopper} if stopper else {}),
                    **({"privacy": privacy} if privacy else {})}
        listed.append(Checkpoint(checkpoint_dir, ckpt.every_steps, ckpt.every_minutes, ckpt.keep, config=config,
                                 stateful=stateful, generators=generators or {}, resume=resume,
                                 write=distributed.world().main))
    if t.freeze:
        if distributed.world().active:
            raise ConfigError("train.freeze with several ranks: not supported (DistributedDataParallel needs every "
                              "parameter's gradient each step); set train.freeze=0 or train in one process")
        listed.append(Freeze(model, t.freeze))
    listed += (callbacks or []) + ([ProgressBar()] if verbose else [])  # after the stops: they see this epoch's
    settings = LoopSettings(epochs=t.epochs, lr=t.lr, schedule=t.schedule, warmup=t.warmup,
                            milestones=tuple(t.step_milestones), gamma=t.step_gamma, grad_accum=t.grad_accum,
                            clip=0.0 if privacy else t.clip, l1=t.l1, precision=t.precision,  # DP clips per row
                            time_limit=budget.training_limit(),
                            time_spent=budget.spent_before, device=torch.device(t.device).type, on_nan=t.on_nan,
                            compile=t.compile == "on" and not privacy, sync=distributed.world().active)
    state = train_loop(model, batches, step_loss, optimizer, settings, validation, listed, wrapped)
    if privacy is not None:
        state.privacy = privacy.summary()
        wrapped.remove_hooks()  # the model goes on to predict and explain as a plain module
    return state, history, stopper


def _time_limit(budget: Budget, validation: Validation, final_rows: int, writes_report: bool) -> list[Callback]:
    """The time-limit callback: the limit bounds the whole command (the time already spent is
    counted), and the final evaluation's time is kept free: validation's measured speed
    (probed before training, then every epoch) times the rows still to score (validation and,
    as its likely size, as many test rows), plus the report when one is written."""
    if not budget.limited:
        return []
    if not len(validation.y):
        return [TimeLimit(budget.training_limit(), budget=budget.limit)]
    validation.probe()
    report = REPORT_SECONDS if writes_report else 0.0

    def after_training() -> float:
        return budget.after_training(validation.seconds_for(final_rows), report)
    return [TimeLimit(budget.training_limit(), after_training, budget=budget.limit)]
