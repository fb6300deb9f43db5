"""Under a time limit, a conv net's width chosen by a short scaling probe instead of by a rule.

The probe trains the recipe at three widths around the default (half, same, double) for three
short runs each (96, 192 and 384 steps of 64 rows, scaled down to fit PROBE_SHARE of the
limit: each a whole one-cycle run on that many fresh rows, BatchNorm's statistics then
recomputed), fits L(N, S) = E + A/N^α + B/S^β to their validation cross-entropies (N
parameters, S training rows seen; scaletrain/fitting/scaling_law.py), and predicts each candidate
width's loss at the rows it can see in the time left (the time left / its measured seconds
per step × the batch). The prediction's winner replaces the default only when it wins in at
least CONFIDENCE of the fit's bootstrap refits, by MARGIN: with 9 short cells the law is a rough guess,
and a rough guess should not overrule the default on a coin flip.

What the law cannot see: rows seen again in later epochs count as new ones (the probe's rows
are all fresh), so it favours small models that would see the data many times; and it
extrapolates from ~13k rows seen to the ~700k a 10-minute run sees (Fashion-MNIST, 2 cores).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from scaletrain.config import Config
from scaletrain.fitting.candidates import train_candidate
from scaletrain.fitting.scaling_law import Law, bootstrap, fit_law
from scaletrain.train import device
from scaletrain.train.budget import PROBE_SHARE, TRAINING_SHARE, Budget
from scaletrain.train.sizing import step_seconds

PROBE_STEPS = (96, 192, 384)      # each cell's optimizer steps, before scaling to the probe's share
PROBE_BATCH = 64
MIN_PROBE_STEPS = 48              # fewer steps than this measure the warm-up, not the model
PROBED = (0.5, 1.0, 2.0)          # widths trained in the probe, as factors of the default
CHOICES = (0.5, 0.75, 1.0, 1.5, 2.0)  # widths the law chooses among
CONFIDENCE = 0.8                  # share of bootstrap refits in which the winner must beat the default
MARGIN = 0.02                     # ... by this share of the default's predicted loss
BOOTSTRAP_ROUNDS = 60
VAL_ROWS = 4096                   # validation rows each cell is scored on
PRECISE_BN_ROWS = 2048
OVERHEAD = 1.3                    # a cell's model building, first steps and validation, over its timed steps


def probe_width(cfg: Config, prepared, budget: Budget) -> tuple[Config, dict]:
    """Return the config with the width the probe chose (the default where it could not run or
    was not confident) and what it measured (metrics.json's "size_probe")."""
    c = cfg.thawed()
    default, batch = c.model.width, c.train.batch_size
    widths = sorted({max(2, int(round(default * f))) for f in CHOICES})
    probed = sorted({max(2, int(round(default * f))) for f in PROBED})
    step = {w: step_seconds(c.with_values({"model.width": w}), prepared) for w in widths}
    steps = _cell_steps({w: step[w] * PROBE_BATCH / batch for w in probed}, probed, budget,
                        prepared.n_train // PROBE_BATCH)
    if steps is None:
        return c, {"ran": False, "why": f"a probe of {len(probed)} widths x {len(PROBE_STEPS)} short runs does not fit "
                   f"{PROBE_SHARE:.0%} of the time limit, or the data has too few batches"}
    cells = [_cell(c, prepared, w, k) for w in probed for k in steps]
    n, s, loss = (np.array([cell[key] for cell in cells], float) for key in ("parameters", "rows", "loss"))
    parameters = {w: _parameters(c, prepared, w) for w in widths}
    seen = {w: budget.left() * TRAINING_SHARE / step[w] * batch for w in widths}
    try:  # an easy task's cells can reach a loss of 0, or a law that predicts no finite loss
        if budget.left() <= 0:
            raise ValueError("no time was left to train after the probe")
        law = fit_law(n, s, loss)
        laws = bootstrap(n, s, loss, law, rounds=BOOTSTRAP_ROUNDS)
        predicted = {w: float(law.loss(parameters[w], seen[w])) for w in widths}
        if not np.all(np.isfinite(list(predicted.values()))):
            raise ValueError("the fitted law predicts no finite loss")
    except ValueError as exc:
        found = {"ran": True, "fitted": False, "cells": cells, "default": default, "chosen": default,
                 "why": f"{exc} (cell losses {', '.join(f'{v:.3g}' for v in loss)})"}
        prepared.note(f"scaling probe: {len(cells)} short runs, but no law could be fitted to their losses or used ({exc}); "
                      f"kept the default width {default}")
        return c, found
    best, wins, chosen = decide(law, laws, parameters, seen, default)
    c.model.width = chosen
    found = {"ran": True, "fitted": True, "cells": cells, "law": law.as_dict(), "predicted_by_width": predicted,
             "rows_seen_by_width": {w: round(v) for w, v in seen.items()}, "best": best, "wins": float(wins),
             "default": default, "chosen": chosen, "seconds": round(sum(cell["seconds"] for cell in cells), 1)}
    prepared.note(_note(found))
    return c, found


def decide(law: Law, laws: list[Law], parameters: dict, seen: dict, default: int) -> tuple[int, float, int]:
    """(the width the law predicts best at the rows each can see, the share of bootstrap laws
    in which it beats the default by MARGIN, the width chosen: that one if the share is ≥
    CONFIDENCE). Measured without the margin: the probe took width 24 for a predicted 0.2% gain
    on Fashion-MNIST (10 minutes) and lost 4.8 points of test accuracy (BENCHMARKS.md)."""
    def loss(b: Law, w: int) -> float:
        return float(b.loss(parameters[w], seen[w]))

    best = min(parameters, key=lambda w: loss(law, w))
    if best == default:
        return best, 1.0, default
    wins = float(np.mean([loss(b, best) < loss(b, default) * (1 - MARGIN) for b in laws]))
    return best, wins, best if wins >= CONFIDENCE else default


def _cell_steps(step: dict, probed: list[int], budget: Budget, batches: int) -> list[int] | None:
    """The cells' step counts: PROBE_STEPS scaled down until the probe fits its share."""
    cost = OVERHEAD * sum(step[w] for w in probed) * sum(PROBE_STEPS)
    factor = min(1.0, PROBE_SHARE * budget.limit / cost)
    steps = [int(k * factor) for k in PROBE_STEPS]
    return None if steps[0] < MIN_PROBE_STEPS or steps[-1] > batches else steps


def _cell(cfg: Config, prepared, width: int, steps: int) -> dict:
    """One probe run: the recipe at `width` for one epoch of `steps` fresh batches; its validation loss."""
    batch = min(PROBE_BATCH, cfg.train.batch_size)
    rows = steps * batch
    subset = replace(prepared, train_inputs=tuple(x[:rows] for x in prepared.train_inputs),
                     train_y=prepared.train_y[:rows], notes=[])
    # smaller batches, the step size scaled with them (linearly for SGD, Goyal et al. 2017; by the
    # square root for Adam): below the critical batch size the loss after S rows hardly depends on
    # the batch (McCandlish et al. 2018), and 4x the steps take the cells past the warm-up
    ratio = batch / cfg.train.batch_size
    lr = cfg.train.lr * (ratio if cfg.train.optimizer in ("sgd", "momentum", "nesterov") else ratio ** 0.5)
    cell = cfg.with_values({"model.width": width, "train.epochs": 1, "train.time_limit": None, "train.lr_find": False,
                            "train.batch_size": batch, "train.lr": lr})
    started = time.perf_counter()
    run = train_candidate(cell, subset, None, False).run
    precise_batch_norm(run.model, _training_chunks(run, subset.train_inputs, cell.train.batch_size))
    val = slice(0, VAL_ROWS)
    loss = torch.nn.functional.cross_entropy(run.outputs(tuple(x[val] for x in prepared.val_inputs)), prepared.val_y[val])
    return {"width": width, "parameters": _count(run.model), "rows": rows, "loss": float(loss),
            "seconds": round(time.perf_counter() - started, 2)}


def precise_batch_norm(model: torch.nn.Module, chunks) -> None:
    """BatchNorm's statistics recomputed as plain averages over `chunks` (tuples of model inputs)
    with the final weights (Wu & Johnson 2021, "precise BN"). After a few dozen steps the running
    averages still hold the first steps' statistics: measured, a width-32 ResNet after 12 steps
    scored a validation loss of 7,792 with them."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        for chunk in chunks if norms else []:
            model(*chunk)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def _training_chunks(run, inputs, batch: int):
    """The first PRECISE_BN_ROWS training rows as the model reads them, a batch at a time."""
    weight = next(run.model.parameters())
    for start in range(0, min(PRECISE_BN_ROWS, len(inputs[0])), batch):
        chunk = list(device.to_device([x[start:start + batch] for x in inputs], weight.device))
        yield tuple(device.as_model_dtype(run.modality.eval_inputs(chunk, run.config.train), weight.dtype))


def _parameters(cfg: Config, prepared, width: int) -> int:
    from scaletrain.train.setup import placed_model

    return _count(placed_model(cfg.with_values({"model.width": width}), prepared)[0])


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _note(found: dict) -> str:
    widths = ", ".join(f"{w}: {v:.3f}" for w, v in found["predicted_by_width"].items())
    best, default, wins = found["best"], found["default"], found["wins"]
    if found["chosen"] != default:
        kept = f"width {found['chosen']} (default {default}; it won in {wins:.0%} of the bootstrap refits)"
    elif best != default:
        kept = f"default width {default} kept (width {best} won in only {wins:.0%} of the bootstrap refits)"
    else:
        kept = f"default width {default} kept"
    return (f"scaling probe ({len(found['cells'])} short runs, {found['seconds']:.0f}s): predicted validation loss by "
            f"width {widths}; {kept}")
