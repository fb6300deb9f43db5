"""The automatic mode's choices that need a measurement on this machine, not only facts
about the data: a model narrow enough for the time budget, and a learning rate from a
range test. Both run only under --time-limit, where a wrong guess cannot be retried."""
from __future__ import annotations

import math

import torch

from scaletrain.config import Config
from scaletrain.train import device
from scaletrain.train.budget import Budget
from scaletrain.train.lr_find import lr_range_test, seconds_per_step
from scaletrain.train.optim import build_optimizer
from scaletrain.train.setup import loss_for, placed_model, training_batches

LR_FIND_STEPS = 100
LR_FIND_RANGE = 10.0   # the range test's pick is kept within this factor of the recipe's lr
MIN_BUDGET_EPOCHS = 10  # epochs a time-limited image model should get; narrower nets until they fit
NARROWEST = 8
BATCH_GROWTH = 4        # the larger batch a time-limited conv net may take, and the smaller one it is judged by
MIN_STEPS_PER_EPOCH = 50  # a batch is never grown past a fiftieth of the training rows


def size_for_budget(cfg: Config, prepared, budget: Budget, batch_may_grow: bool = False) -> Config:
    """Return the config with the conv net's width halved (from the data-size default) until
    MIN_BUDGET_EPOCHS epochs fit in `seconds`, each width's step time measured here (after
    its batch is grown where this device runs a larger one much faster: `grow_batch`).

    Why: the one-cycle schedule over two or three epochs leaves a wide net far from trained,
    while a net with a quarter of the compute (half the width) gets four times the epochs.
    Measured on 8,000 Fashion-MNIST images with --time-limit 20s: width 32, 2 epochs, test
    accuracy 0.69; see BENCHMARKS.md for the narrower choice. A narrower net that is not
    faster here is not taken: in bf16 on AMX tiles width 8 steps slower than width 16 (59
    against 35 ms at 256 images), and the 30-s Fashion-MNIST run scored 0.861 at width 8 (2
    epochs) against 0.888 at 16 (3 epochs).
    """
    c = cfg.thawed()
    if c.model.name not in ("cnn", "resnet"):
        return c
    torch.set_num_threads(c.train.threads)
    seconds = grow_batch(c, prepared) if batch_may_grow else step_seconds(c, prepared)  # at the batch kept
    steps = math.ceil(prepared.n_train / c.train.batch_size / c.train.grad_accum) * c.train.grad_accum
    default, training, slower = c.model.width, budget.sizing_seconds(), ""
    while (epochs := training / (seconds * steps)) < MIN_BUDGET_EPOCHS and c.model.width > NARROWEST:
        narrower = c.with_values({"model.width": c.model.width // 2})
        narrower_seconds = step_seconds(narrower, prepared)
        if narrower_seconds >= seconds:
            slower = (f"; width {narrower.model.width} is no faster here ({narrower_seconds * 1000:.0f} against "
                      f"{seconds * 1000:.0f} ms a step)")
            break
        c, seconds = narrower, narrower_seconds
    if c.model.width != default or slower:
        prepared.note(f"width {c.model.width}{'' if c.model.width == default else f' instead of {default}'}: about "
                      f"{epochs:.0f} epochs fit the time limit at that width (the aim is {MIN_BUDGET_EPOCHS}){slower}")
    return c


def grow_batch(c: Config, prepared) -> float:
    """Grow the conv net's batch BATCH_GROWTH-fold, its learning rate with it (linear scaling),
    where this device runs the larger batch at least twice as fast per image; return the
    seconds of a step at the batch kept.

    Why: a small net's step on a GPU is bound by kernel launches, not arithmetic (the
    zero-config ResNet on an H200: 4.5 ms at 256 images, 7.6 ms at 2,048), so a time-limited
    run there gets several times the epochs from a larger batch; a CPU's step costs about its
    batch (Fashion-MNIST, 12 epochs on 2 cores: 95 s at 256, 91 s at 1,024) and keeps it.
    Per epoch the larger batch costs little: 12 epochs of Fashion-MNIST, width 16, test
    accuracy 0.9283 at 256 (lr 0.1), 0.9258 at 1,024 (lr 0.4), 0.9191 at 1,024 (lr 0.2).
    The cheap check comes first: a device whose step at the batch costs at least half of
    BATCH_GROWTH steps at a BATCH_GROWTH-th of it is not launch-bound, and the larger batch
    is never timed (a CPU pays a few small steps)."""
    t = c.train
    base = step_seconds(c, prepared)
    bigger = t.batch_size * BATCH_GROWTH
    if bigger * MIN_STEPS_PER_EPOCH > prepared.n_train or t.batch_size < BATCH_GROWTH:
        return base
    if base >= step_seconds(c.with_values({"train.batch_size": t.batch_size // BATCH_GROWTH}), prepared) \
            * BATCH_GROWTH / 2:
        return base
    larger = step_seconds(c.with_values({"train.batch_size": bigger}), prepared)
    if larger >= base * BATCH_GROWTH / 2:
        return base
    prepared.note(f"batch {bigger} instead of {t.batch_size} (lr {t.lr * BATCH_GROWTH:.3g} instead of {t.lr:.3g}): "
                  f"a step of it took {larger * 1000:.1f} ms against {base * 1000:.1f} ms, "
                  f"{base * BATCH_GROWTH / larger:.1f}x the images a second on this device")
    t.batch_size, t.lr = bigger, t.lr * BATCH_GROWTH
    return larger


def step_seconds(cfg: Config, prepared) -> float:
    """Seconds per training step of the model `cfg` names, timed on real batches in the
    precision it trains in (bf16 and fp32 rank widths differently on AMX tiles)."""
    t = cfg.train
    model, _ = placed_model(cfg, prepared)
    with device.autocast(t.precision, next(model.parameters()).device.type):
        return seconds_per_step(model, training_batches(cfg, prepared), loss_for(t, prepared),
                                build_optimizer(model, t.optimizer, t.lr, t.momentum, t.weight_decay))


def find_lr(cfg: Config, model: torch.nn.Module, batches, prepared, budget: Budget) -> None:
    """Set cfg.train.lr from a learning-rate range test on this model and data.

    Adam-family optimizers (tables) take the test's pick, the rate of the lowest smoothed loss
    / 10, within a decade of the recipe's default (~100 steps are a noisy measurement; on
    breast cancer it picked 0.0147 against the default 0.01, same test accuracy).
    SGD with a one-cycle schedule (images) keeps the recipe's rate unless the loss ran away
    below ten times it; then it takes a tenth of where it ran away. Measured: taking the
    pick instead lowered Fashion-MNIST (8,000 images, 60 s) from 0.881 to 0.858-0.864 for
    every divisor tried (10, 3, 1): a short sweep from random weights favours smaller rates
    than a one-cycle run with batch norm trains best with.
    The test takes at most the budget's range-test share of the limit and is skipped where
    that buys too few steps.
    """
    t = cfg.train
    loss_fn = loss_for(t, prepared)
    finding = lr_range_test(model, batches, loss_fn,
                            lambda lr: build_optimizer(model, t.optimizer, lr, t.momentum, t.weight_decay),
                            steps=LR_FIND_STEPS, lo=t.lr / LR_FIND_RANGE, hi=t.lr * LR_FIND_RANGE,
                            max_seconds=budget.lr_find_seconds())
    if finding is None:
        prepared.note(f"no learning-rate range test: too few steps fit in {budget.lr_find_seconds():.1f}s "
                      f"of the time limit; lr {t.lr:.3g} from the recipe")
        return
    recipe = t.lr
    if t.optimizer in ("adam", "adamw"):
        chosen = finding.lr
    elif finding.diverged_at is not None and recipe > finding.diverged_at / LR_FIND_RANGE:
        chosen = max(finding.diverged_at / LR_FIND_RANGE, recipe / LR_FIND_RANGE)
    else:
        chosen = recipe
    t.lr = float(f"{chosen:.3g}")
    ran_away = f", loss ran away at {finding.diverged_at:.3g}" if finding.diverged_at else ""
    prepared.note(f"learning-rate range test ({len(finding.lrs)} steps, {finding.seconds:.1f}s{ran_away}): "
                  f"lr {t.lr:.3g} (recipe default {recipe:.3g})")
