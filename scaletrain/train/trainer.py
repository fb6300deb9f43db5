"""Assembles one training run from the resolved train config: loss, optimizer, batches, callbacks."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from scaletrain import distributed
from scaletrain.train.callbacks import EarlyStopping, History, ProgressBar, TimeLimit
from scaletrain.train.checkpoint import Checkpoint
from scaletrain.train.loop import Callback, LoopSettings, TrainState, train_loop
from scaletrain.train.losses import balanced_weights, build_loss
from scaletrain.train.optim import build_optimizer


EVAL_RESERVE = 0.03       # share of a time limit kept for the final evaluation until it is measured
REPORT_SECONDS = 5.0      # writing the run directory and report.html (Fashion-MNIST: ~4 s)
EPOCH_VAL_ROWS = 2048     # validation rows scored per epoch when no early stopping needs them


def validation_fn(outputs_fn: Callable, val_inputs, val_y: torch.Tensor, loss_fn: Callable, task: str) -> Callable:
    """Return validate(model) -> {val_loss, val_score}; the score is accuracy or R²."""
    def validate(model: nn.Module) -> dict:
        if len(val_y) == 0:
            return {}
        out = outputs_fn(val_inputs)
        y = val_y.to(out.device)
        loss = float(loss_fn(out, y))
        if task == "regression":
            pred = out.squeeze(-1)
            score = 1 - float(((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum().clamp(min=1e-12))
        elif out.shape[1] == 1:  # bce: one logit
            score = float(((out.squeeze(-1) > 0).long() == y).float().mean())
        else:
            score = float((out.argmax(1) == y).float().mean())
        return {"val_loss": loss, "val_score": score}
    return validate


def fit_model(model: nn.Module, batches, class_counts: torch.Tensor | None,
              outputs_fn: Callable, val_inputs, val_y: torch.Tensor, t, ckpt, task: str,
              generators: dict[str, torch.Generator] | None = None, checkpoint_dir: Path | None = None,
              verbose: bool = True, config: dict | None = None, resume: bool = False,
              time_spent: float = 0.0, callbacks: list[Callback] | None = None,
              report_seconds: float = REPORT_SECONDS) -> tuple[TrainState, History, EarlyStopping | None]:
    """Train the model in place on `batches` (TensorBatches or ShardBatches); return the final
    state, the history and the early stopper.

    With `resume`, training continues from the newest valid checkpoint in checkpoint_dir;
    `report_seconds` is kept free at the end of a time limit for writing the run (0: none written).
    """
    device = torch.device(t.device)
    weights = (balanced_weights(class_counts).to(device)
               if t.class_weight == "balanced" and class_counts is not None else None)
    loss_fn = build_loss(t.loss, task, t.label_smoothing, weights)
    w = distributed.world()
    wrapped = distributed.wrap(model, t.device, t.fsdp)  # before the optimizer: FSDP replaces parameters
    optimizer = build_optimizer(model, t.optimizer, t.lr, t.momentum, t.weight_decay)
    history = History()
    extra, callbacks = callbacks or [], [history]
    stopper = EarlyStopping(t.early_stopping, t.monitor) if t.early_stopping else None
    if stopper:
        callbacks.append(stopper)
    # The limit bounds the whole command: what loading took is counted (time_spent), and the
    # final evaluation's time is kept free: validation's measured speed (probed before
    # training, then every epoch) times the rows still to score (validation and, as its
    # likely size, as many test rows) plus the report, and at least 3% of the limit.
    timing = {"rows": 0, "seconds": 0.0}
    final_rows = 2 * len(val_y)

    def after_training() -> float:  # never below the flat share: a 10-minute run overran by 9.5 s without it
        measured = timing["seconds"] / max(timing["rows"], 1) * final_rows + report_seconds
        return max(measured, EVAL_RESERVE * t.time_limit)

    time_limit = t.time_limit * (1 - EVAL_RESERVE) if t.time_limit else None
    if time_limit:
        callbacks.append(TimeLimit(time_limit, after_training if len(val_y) else None, budget=t.time_limit))
    # Under FSDP each rank holds a shard of the weights and optimizer state: mid-run
    # checkpoints of sharded state are not written (the final model is gathered and saved).
    if checkpoint_dir is not None and ckpt.keep > 0 and not (t.fsdp and w.active):
        stateful = {"history": history, **({"early_stopping": stopper} if stopper else {})}
        # every rank restores from the checkpoint rank 0 wrote (DDP keeps their weights equal)
        callbacks.append(Checkpoint(checkpoint_dir, ckpt.every_steps, ckpt.every_minutes, ckpt.keep,
                                    config=config, stateful=stateful, generators=generators or {}, resume=resume,
                                    write=w.main))
    callbacks.extend(extra)  # after early stopping and the time limit: they see this epoch's decision
    if verbose:
        callbacks.append(ProgressBar())
    settings = LoopSettings(epochs=t.epochs, lr=t.lr, schedule=t.schedule, warmup=t.warmup,
                            milestones=tuple(t.step_milestones), gamma=t.step_gamma, grad_accum=t.grad_accum,
                            clip=t.clip, l1=t.l1, precision=t.precision, time_limit=time_limit, time_spent=time_spent,
                            device=device.type, on_nan=t.on_nan, compile=t.compile == "on", sync=w.active)
    if not stopper and len(val_y) > EPOCH_VAL_ROWS:
        # nothing stops on the per-epoch score, which only draws the learning curve: a fixed
        # subset keeps evaluation from stalling training (Fashion-MNIST: 2.5 s of ~32 s an
        # epoch on all 9,000 rows); the final metrics use every row
        keep = torch.randperm(len(val_y), generator=torch.Generator().manual_seed(0))[:EPOCH_VAL_ROWS]
        val_inputs, val_y = tuple(x[keep] for x in val_inputs), val_y[keep]
    scored = validation_fn(outputs_fn, val_inputs, val_y, loss_fn, task)

    def validate(model: nn.Module) -> dict:
        started = time.perf_counter()
        result = scored(model)
        timing["rows"] += len(val_y)
        timing["seconds"] += time.perf_counter() - started
        return result

    if time_limit and len(val_y):  # a first measure of validation speed, for the time limit's reserve
        probe = min(len(val_y), 256)
        started = time.perf_counter()
        outputs_fn(tuple(x[:probe] for x in val_inputs))
        timing["rows"], timing["seconds"] = probe, time.perf_counter() - started
    state = train_loop(model, batches, loss_fn, optimizer, settings, validate, callbacks, wrapped)
    return state, history, stopper
