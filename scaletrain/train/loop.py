"""The training loop. It fits on one screen; everything optional plugs in as a callback."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from scaletrain.errors import TrainingError
from scaletrain.parallel import distributed
from scaletrain.train import device
from scaletrain.train.optim import lr_factor, set_lr


@dataclass
class LoopSettings:
    epochs: int
    lr: float
    schedule: str = "constant"
    warmup: float = 0.0
    milestones: tuple = (0.5, 0.75)
    gamma: float = 0.1
    grad_accum: int = 1
    clip: float = 0.0
    l1: float = 0.0
    precision: str = "fp32"
    time_limit: float | None = None
    time_spent: float = 0.0     # seconds the command spent before training (loading, preparing)
    device: str = "cpu"
    on_nan: str = "stop"
    compile: bool = False
    nan_check_every: int = 0    # steps between non-finite-loss checks; 0: 1 on CPU or with skip, 32 on CUDA
    sync: bool = False          # data-parallel ranks: stops and the epoch's loss are agreed across them


@dataclass
class TrainState:
    """What callbacks see and may change (set `stop` to end training after this step)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    settings: LoopSettings
    total_steps: int
    epoch: int = 0
    step: int = 0
    batch: int = 0              # batches consumed in the current epoch (a resume starts here)
    lr: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    elapsed_before: float = 0.0  # seconds spent before a resume
    loss_sum: torch.Tensor | float = 0.0  # the current epoch's summed training loss, so far
    loss_count: int = 0
    train_loss: float = float("nan")
    val: dict = field(default_factory=dict)
    stop: bool = False
    time_limit: float | None = None  # where a time limit ends training; a callback may move it
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling; checkpointed with the rest
    privacy: dict | None = None  # DP-SGD: what the accountant spent (train/private.py)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started + self.elapsed_before

    @property
    def progress(self) -> float:
        by_steps = self.step / max(self.total_steps, 1)
        by_time = self.elapsed / self.time_limit if self.time_limit else 0.0
        return max(by_steps, by_time)


class Callback:
    def on_train_begin(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState, loss: torch.Tensor) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


def l1_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters() if p.dim() >= 2)


def _nonfinite(what: str, lr: float) -> TrainingError:
    return TrainingError(f"{what}; lower train.lr (now {lr}), check the data for extreme values, "
                         "or --set train.on_nan=skip to skip such batches")


def _check_finite(loss_sum: torch.Tensor, first: int, last: int, lr: float) -> None:
    if not torch.isfinite(loss_sum).item():
        raise _nonfinite(f"the loss became non-finite between steps {first} and {last}", lr)


def train_loop(model: nn.Module, batches, loss_fn: Callable, optimizer: torch.optim.Optimizer,
               settings: LoopSettings, validate: Callable[[nn.Module], dict],
               callbacks: list[Callback], wrapped: nn.Module | None = None) -> TrainState:
    """Train `model` and return the final state; `validate(model)` gives the epoch's val metrics.
    `wrapped` is the module training steps call when it is not the model itself (DDP, FSDP)."""
    s = settings
    # the compiled (or data-parallel) module shares the model's parameters; checkpoints and
    # evaluation keep using `model` itself, so their state-dict keys do not change
    wrapped = wrapped if wrapped is not None else model
    forward = device.compiled(wrapped, s.compile)
    no_sync = getattr(wrapped, "no_sync", None) if s.grad_accum > 1 else None  # DDP: reduce once per step
    steps_per_epoch = -(-len(batches) // s.grad_accum)
    scaler = device.grad_scaler(s.precision, s.device)
    state = TrainState(model, optimizer, s, total_steps=s.epochs * steps_per_epoch, scaler=scaler,
                       elapsed_before=s.time_spent, time_limit=s.time_limit)  # counted from the command's start
    # Reading a value back from a GPU waits for the queued kernels: on CUDA the non-finite
    # check is kept on the device and read every 32 steps (a NaN still stops the run, naming the
    # steps); on CPU a read costs nothing, and skipping a bad batch needs it before the step.
    # Between reads, the epoch's running loss sum carries the check: one non-finite loss makes
    # it non-finite (on the H200 three extra kernels a step cost ~8% of a small MLP's step).
    check_every = s.nan_check_every or (1 if s.device == "cpu" or s.on_nan == "skip" else 32)
    unchecked_from = state.step + 1
    for cb in callbacks:
        cb.on_train_begin(state)
    for state.epoch in range(state.epoch, s.epochs):  # noqa: B020 - the state carries the epoch (a resume starts there)
        if state.stop:  # a resumed run that had already decided to stop
            break
        model.train()
        # summed on the device (no host sync per step); a resume brings the epoch's sum so far
        state.loss_sum = torch.as_tensor(float(state.loss_sum) if state.batch else 0.0, device=s.device)
        state.loss_count = state.loss_count if state.batch else 0
        for i, (inputs, y) in enumerate(batches.epoch(state.epoch, start=state.batch), start=state.batch):
            accumulating = (i + 1) % s.grad_accum and i + 1 < len(batches)
            with (no_sync() if no_sync and accumulating else contextlib.nullcontext()), \
                    device.autocast(s.precision, s.device):
                loss = loss_fn(forward(*inputs), y)
            if s.l1:
                loss = loss + s.l1 * l1_penalty(model)
            bad = check_every == 1 and not torch.isfinite(loss.detach()).item()
            if s.sync and s.on_nan == "skip":  # every rank skips the step, or none does
                bad = distributed.any_rank(bad)
            if bad:
                if s.on_nan == "skip":
                    optimizer.zero_grad(set_to_none=True)
                    continue
                raise _nonfinite(f"the loss became {loss.item()} at step {state.step + 1} "
                                 f"(epoch {state.epoch + 1}, batch {i + 1})", s.lr)
            scaled = scaler.scale(loss) if scaler else loss
            (scaled.div(s.grad_accum) if s.grad_accum > 1 else scaled).backward()  # no extra node at 1
            state.loss_sum.add_(loss.detach(), alpha=len(y))
            state.loss_count += len(y)
            if accumulating:
                continue  # accumulate gradients over grad_accum batches
            state.lr = s.lr * lr_factor(state.progress, s.schedule, s.warmup, list(s.milestones), s.gamma)
            set_lr(optimizer, state.lr)
            if scaler:
                scaler.unscale_(optimizer)
            if s.clip:
                nn.utils.clip_grad_norm_(model.parameters(), s.clip)
            scaler.step(optimizer) if scaler else optimizer.step()
            if scaler:
                scaler.update()
            optimizer.zero_grad(set_to_none=True)
            state.step, state.batch = state.step + 1, i + 1
            if check_every > 1 and state.step % check_every == 0:
                _check_finite(state.loss_sum, unchecked_from, state.step, s.lr)
                unchecked_from = state.step + 1
            for cb in callbacks:
                cb.on_step_end(state, loss)
            if s.sync and state.time_limit:  # each rank's clock decides; all stop at the same step
                state.stop = distributed.any_rank(state.stop)
            if state.stop:
                break
        if check_every > 1:  # the epoch's end syncs anyway
            _check_finite(state.loss_sum, unchecked_from, state.step, s.lr)
        unchecked_from = state.step + 1
        total, count = float(state.loss_sum), state.loss_count
        if s.sync:
            total, count = distributed.sum_across([total, count])
        state.train_loss = total / max(count, 1)
        model.eval()
        state.val = validate(model)
        for cb in callbacks:
            cb.on_epoch_end(state)
        if s.sync:
            state.stop = distributed.any_rank(state.stop)
        state.batch, state.loss_sum, state.loss_count = 0, 0.0, 0
    for cb in callbacks:
        cb.on_train_end(state)
    return state
