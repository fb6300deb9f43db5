"""The learning-rate range test (L. Smith, 2015; the "lr finder" of fastai): train briefly
while the learning rate grows exponentially, watch the smoothed loss, and take a step size
safely below where the loss was lowest, before it diverges.

Written here rather than taken from a library: it must run on our batches (tensors or
shard streams), our loss and optimizer builders, and leave the model exactly as it was.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from torch import nn

SMOOTHING = 0.98      # exponential moving average of the loss (bias-corrected)
DIVERGED = 4.0        # stop once the smoothed loss exceeds this multiple of its minimum
BELOW_MINIMUM = 10.0  # the chosen lr: the lr of the lowest smoothed loss / this (fastai's min/10)


@dataclass
class LrFinding:
    lr: float                       # the suggested learning rate
    diverged_at: float | None = None  # where the smoothed loss ran away (None: not within the sweep)
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)   # smoothed, one per step tried
    seconds: float = 0.0


def lr_range_test(model: nn.Module, batches, loss_fn, make_optimizer, *, start: float = 1e-6, end: float = 3.0,
                  steps: int = 100, lo: float | None = None, hi: float | None = None,
                  max_seconds: float | None = None, min_steps: int = 30) -> LrFinding | None:
    """Return the suggested learning rate for `model` trained on `batches` (anything with
    .epoch(n) yielding (inputs, y)); `make_optimizer(lr)` builds the optimizer to probe with.
    The model's parameters and buffers (batch-norm statistics) are restored afterwards.
    The suggestion is clipped to [lo, hi] when given. With `max_seconds`, the sweep takes as
    many steps as fit in it (timed on 3 steps first) and returns None if under `min_steps`."""
    started = time.perf_counter()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    lrs, losses, average, lowest, diverged_at = [], [], 0.0, math.inf, None
    model.train()
    try:
        if max_seconds is not None:
            steps = min(steps, int(max_seconds / seconds_per_step(model, batches, loss_fn, make_optimizer(start))))
            if steps < min_steps:
                return None
            model.load_state_dict(saved)
        optimizer = make_optimizer(start)
        factor = (end / start) ** (1 / max(steps - 1, 1))
        for i, (inputs, y) in enumerate(_cycle(batches, steps)):
            lr = start * factor ** i
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = loss_fn(model(*inputs), y)
            value = float(loss.detach())
            if not math.isfinite(value):
                diverged_at = lr
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed = average / (1 - SMOOTHING ** (i + 1))
            lrs.append(lr)
            losses.append(smoothed)
            lowest = min(lowest, smoothed)
            if i > 10 and smoothed > DIVERGED * lowest:
                diverged_at = lr
                break
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
    if not losses:
        raise ValueError("the learning-rate range test diverged at its first step")
    best = lrs[min(range(len(losses)), key=losses.__getitem__)]
    lr = best / BELOW_MINIMUM
    lr = max(lr, lo) if lo is not None else lr
    lr = min(lr, hi) if hi is not None else lr
    return LrFinding(lr, diverged_at, lrs, losses, time.perf_counter() - started)


def seconds_per_step(model: nn.Module, batches, loss_fn, optimizer, timed: int = 5) -> float:
    """Time training steps on real batches (one untimed warm-up step first) and return the
    median: one step that the OS preempted (40 ms against 0.9 ms, seen on a busy 2-core
    machine) must not make a budget decision think no steps fit. The caller restores the
    model if the steps must leave no trace."""
    model.train()
    times, clock = [], 0.0
    for i, (inputs, y) in enumerate(_cycle(batches, timed + 1)):  # a step's time includes fetching its batch
        loss = loss_fn(model(*inputs), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the step's kernels: a GPU would otherwise run behind the clock
        if i:
            times.append(time.perf_counter() - clock)
        clock = time.perf_counter()
    return statistics.median(times)


def _cycle(batches, steps: int):
    """Yield `steps` batches, going through as many epochs as that takes."""
    taken, epoch = 0, 0
    while taken < steps:
        for batch in batches.epoch(epoch):
            yield batch
            taken += 1
            if taken >= steps:
                return
        epoch += 1
