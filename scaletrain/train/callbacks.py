"""Callbacks: early stopping, time limit, history, memory release, progress bar (checkpoints: checkpoint.py)."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch

from scaletrain.runtime import release_freed_memory
from scaletrain.train.loop import Callback, TrainState


class EarlyStopping(Callback):
    """Stops after `patience` epochs without improvement and restores the best weights."""

    def __init__(self, patience: int, monitor: str = "val_loss"):
        self.patience, self.monitor = patience, monitor
        self.best = math.inf
        self.best_epoch = -1
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.waited = 0

    def _score(self, state: TrainState) -> float:
        value = state.val.get(self.monitor, math.nan)
        return value if self.monitor == "val_loss" else -value  # lower is better

    def on_epoch_end(self, state: TrainState) -> None:
        score = self._score(state)
        if score < self.best - 1e-12:
            self.best, self.best_epoch, self.waited = score, state.epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        else:
            self.waited += 1
            if self.patience and self.waited >= self.patience:
                state.stop = True

    def on_train_end(self, state: TrainState) -> None:
        if self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)

    def state_dict(self) -> tuple[dict, dict[str, torch.Tensor]]:
        plain = {"best": self.best if math.isfinite(self.best) else None, "best_epoch": self.best_epoch,
                 "waited": self.waited}
        return plain, dict(self.best_weights or {})

    def load_state_dict(self, plain: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.best = math.inf if plain["best"] is None else plain["best"]
        self.best_epoch, self.waited = plain["best_epoch"], plain["waited"]
        self.best_weights = tensors or None


class TimeLimit(Callback):
    """Stops training once the time budget is spent (the schedule has annealed by then).

    `after` (optional) returns the seconds the command still needs once training ends (the
    final evaluation, estimated from how fast validation runs); the limit, and with it the
    time-driven schedule, is moved earlier by that much, at the start and after each epoch.
    """

    def __init__(self, seconds: float, after: Callable[[], float] | None = None, budget: float | None = None):
        self.seconds, self.after, self.budget = seconds, after, budget or seconds

    def on_train_begin(self, state: TrainState) -> None:
        self.on_epoch_end(state)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.after is not None:
            self.seconds = max(self.budget - self.after(), 0.0)
            state.time_limit = max(self.seconds, 1e-3)

    def on_step_end(self, state: TrainState, loss) -> None:
        if state.elapsed >= self.seconds:
            state.stop = True


class History(Callback):
    """Keeps one row per epoch: step, train loss, val metrics, lr, seconds."""

    def __init__(self):
        self.rows: list[dict] = []

    def state_dict(self) -> tuple[dict, dict]:
        return {"rows": self.rows}, {}

    def load_state_dict(self, plain: dict, tensors: dict) -> None:
        self.rows = list(plain["rows"])

    def on_epoch_end(self, state: TrainState) -> None:
        self.rows.append({"epoch": state.epoch + 1, "step": state.step, "train_loss": state.train_loss,
                          **state.val, "lr": state.lr, "seconds": round(state.elapsed, 3)})


class ReleaseMemory(Callback):
    """Every `every` steps, the heap's freed pages go back to the OS (runtime.release_freed_memory)."""

    def __init__(self, every: int = 10):
        self.every = every

    def on_step_end(self, state: TrainState, loss) -> None:
        if state.step % self.every == 0:
            release_freed_memory()


class ProgressBar(Callback):
    """A rich progress bar over training progress (steps, or time under a time limit, whichever
    is further), with loss and the last validation score."""

    def __init__(self, description: str = "training"):
        self.description = description
        self.progress = None

    def on_train_begin(self, state: TrainState) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), transient=True)
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=1.0, info="")
        self.last = time.perf_counter()

    def on_step_end(self, state: TrainState, loss) -> None:
        now = time.perf_counter()
        if now - self.last > 0.5:  # reading the loss syncs the device: do it twice a second at most
            self.progress.update(self.task, completed=state.progress,
                                 info=f"epoch {state.epoch + 1} step {state.step} loss {loss.item():.4f}")
            self.last = now

    def on_epoch_end(self, state: TrainState) -> None:
        shown = {k: v for k, v in state.val.items() if k in ("val_loss", "val_score")}
        info = f"epoch {state.epoch + 1} loss {state.train_loss:.4f} " + " ".join(f"{k} {v:.4f}" for k, v in shown.items())
        self.progress.update(self.task, completed=state.progress, info=info)

    def on_train_end(self, state: TrainState) -> None:
        self.progress.stop()


class Freeze(Callback):
    """The pretrained tensors (those model.init_from loaded, marked `pretrained`) stay fixed for
    the first `share` of the steps, then learn too: gradual unfreezing in one stage (ULMFiT),
    or with share 1 a linear probe. Frozen tensors need no gradients, so the encoder's backward
    pass is skipped as well. Derived from the step count, so a resume freezes the same steps."""

    def __init__(self, model: torch.nn.Module, share: float):
        self.params = [p for p in model.parameters() if getattr(p, "pretrained", False)]
        self.share, self.until = share, 0

    def on_train_begin(self, state: TrainState) -> None:
        self.until = round(self.share * state.total_steps) if self.share < 1 else float("inf")
        self._set(state.step)

    def on_step_end(self, state: TrainState, loss) -> None:
        if state.step == self.until:
            self._set(state.step)

    def _set(self, step: int) -> None:
        for p in self.params:
            p.requires_grad_(step >= self.until)
