"""The automatic mode's choices that need a measurement on this machine, not only facts
about the data: a model narrow enough for the time budget, and a learning rate from a
range test. Both run only under --time-limit, where a wrong guess cannot be retried."""
from __future__ import annotations

import math

import torch

from scaletrain.config import Config
from scaletrain.train.budget import Budget
from scaletrain.train.lr_find import lr_range_test, seconds_per_step
from scaletrain.train.optim import build_optimizer
from scaletrain.train.setup import loss_for, placed_model, training_batches

LR_FIND_STEPS = 100
LR_FIND_RANGE = 10.0   # the range test's pick is kept within this factor of the recipe's lr
MIN_BUDGET_EPOCHS = 10  # epochs a time-limited image model should get; narrower nets until they fit
NARROWEST = 8


def size_for_budget(cfg: Config, prepared, budget: Budget) -> Config:
    """Return the config with the conv net's width halved (from the data-size default) until
    MIN_BUDGET_EPOCHS epochs fit in `seconds`, each width's step time measured here.

    Why: the one-cycle schedule over two or three epochs leaves a wide net far from trained,
    while a net with a quarter of the compute (half the width) gets four times the epochs.
    Measured on 8,000 Fashion-MNIST images with --time-limit 20s: width 32, 2 epochs, test
    accuracy 0.69; see BENCHMARKS.md for the narrower choice.
    """
    c = cfg.thawed()
    if c.model.name not in ("cnn", "resnet"):
        return c
    torch.set_num_threads(c.train.threads)
    steps = math.ceil(prepared.n_train / c.train.batch_size / c.train.grad_accum) * c.train.grad_accum
    default = c.model.width
    training = budget.sizing_seconds()
    while True:
        epochs = training / (step_seconds(c, prepared) * steps)
        if epochs >= MIN_BUDGET_EPOCHS or c.model.width <= NARROWEST:
            break
        c.model.width //= 2
    if c.model.width != default:
        prepared.note(f"width {c.model.width} instead of {default}: about {epochs:.0f} epochs fit the "
                      f"time limit at that width (the aim is {MIN_BUDGET_EPOCHS})")
    return c


def step_seconds(cfg: Config, prepared) -> float:
    """Seconds per training step of the model `cfg` names, timed on real batches."""
    t = cfg.train
    model, _ = placed_model(cfg, prepared)
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
