"""Zero-config's candidates: each trained, then one chosen on the validation split (by
cross-validation on small data: scaletrain/folds.py) and, if linear, refit on every row."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scaletrain import distributed
from scaletrain.budget import Budget
from scaletrain.config import Config
from scaletrain.data.prepared import Prepared
from scaletrain.errors import ConfigError
from scaletrain.evaluate.metrics import score_outputs
from scaletrain.models.registry import build_model
from scaletrain.run import Run
from scaletrain.train import device
from scaletrain.train.full_batch import CV_FOLDS as L2_FOLDS
from scaletrain.train.full_batch import fit_full_batch, on_validation
from scaletrain.train.setup import extra_generators, placed_model, training_batches
from scaletrain.train.sizing import find_lr
from scaletrain.train.trainer import fit_model

OCCAM_MARGIN = 0.05


@dataclass
class Trained:
    run: Run
    state: object
    seconds: float
    best_epoch: int
    best_val_loss: float
    l2_chosen: bool = False  # lbfgs: its L2 strength was cross-validated (a refit chooses it anew)


def train_candidate(cfg: Config, prepared: Prepared, checkpoint_dir: Path | None, verbose: bool,
                    resume: bool = False, budget: Budget | None = None, callbacks: list | None = None) -> Trained:
    """Build the model a resolved config names, train it, and return the result."""
    torch.set_num_threads(cfg.train.threads)
    budget = budget or Budget(None)
    if cfg.model.name == "boosted":
        return fit_by_boosting(cfg, prepared)
    model, spec = placed_model(cfg, prepared)
    run = Run(cfg, model, spec, prepared.preprocess)
    started = time.perf_counter()
    score = lambda out, y: score_outputs(prepared.task, out, y)  # noqa: E731
    if cfg.train.optimizer == "lbfgs":
        return fit_by_lbfgs(cfg, prepared, run, started, score, callbacks)
    batches = training_batches(cfg, prepared)
    if cfg.train.lr_find is True:
        find_lr(cfg, model, batches, prepared, budget)
        cfg.train.lr = float(distributed.broadcast_text(repr(cfg.train.lr)))  # rank 0's pick, on every rank
    state, history, stopper = fit_model(
        model, batches, prepared.class_counts(), run.outputs, prepared.val_inputs, prepared.val_y,
        cfg.train, cfg.checkpoint, prepared.task, generators=extra_generators(batches),
        checkpoint_dir=checkpoint_dir, verbose=verbose, config=cfg.to_dict(),
        resume=resume, budget=budget.from_now(), callbacks=callbacks, score=score)
    if cfg.train.fsdp and distributed.world().active:  # the shards gathered into one plain model, on rank 0
        full = distributed.full_state(model, fsdp=True)  # a collective: every rank takes part
        if distributed.world().main:
            gathered = build_model(spec, cfg.model)
            gathered.load_state_dict(full)
            run.model = device.place(gathered, cfg.train.device)
    run.model.eval()
    run.history = history.rows
    losses = [row.get("val_loss", math.inf) for row in history.rows] or [math.inf]
    best_epoch = (stopper.best_epoch + 1) if stopper and stopper.best_epoch >= 0 else len(history.rows)
    return Trained(run, state, time.perf_counter() - started, best_epoch, min(losses) if stopper else losses[-1])


def fit_by_lbfgs(cfg: Config, prepared: Prepared, run: Run, started: float, score, callbacks) -> Trained:
    """Train by full-batch L-BFGS (in memory, one process), the L2 strength cross-validated if unset."""
    if prepared.shard_url is not None or distributed.world().active:
        raise ConfigError("train.optimizer=lbfgs takes every training row at once: it needs the rows in memory "
                          "and one process; use adamw for shards or several ranks")
    chosen = cfg.train.weight_decay is None
    by_validation = chosen and on_validation(len(prepared.train_y), len(prepared.val_y))
    state, history, path = fit_full_batch(run.model, lambda: placed_model(cfg, prepared)[0], prepared, cfg.train,
                                          run.outputs, score, callbacks or [])
    if chosen and path:
        how = "on the validation rows" if by_validation else f"by {L2_FOLDS}-fold cross-validation"
        prepared.notes.append(f"{cfg.model.name}: L2 strength (train.weight_decay) {cfg.train.weight_decay:g} chosen {how} "
                              f"over {min(path):g}..{max(path):g}")
    run.history = history.rows
    val_loss = history.rows[-1].get("val_loss", math.inf)
    # chosen on the validation rows: a refit on them keeps the strength (there is nothing left to choose on)
    return Trained(run, state, time.perf_counter() - started, 1, val_loss, l2_chosen=chosen and not by_validation)


def fit_by_boosting(cfg: Config, prepared: Prepared) -> Trained:
    """Grow boosted trees (one process, rows in memory), compile them into the run's model and
    record their shape in its config so the run directory rebuilds them."""
    from scaletrain.train.boosted import fit_boosted
    from scaletrain.train.loop import LoopSettings, TrainState
    from scaletrain.train.setup import loss_for, model_spec
    from scaletrain.train.trainer import Validation

    if distributed.world().active:
        raise ConfigError("model.name=boosted grows trees in one process; use mlp under torchrun or Ray")
    started = time.perf_counter()
    spec = model_spec(cfg, prepared)
    model, measured = fit_boosted(prepared, spec.n_out, cfg.train.threads, cfg.train.seed,
                                  cfg.train.class_weight == "balanced")
    cfg.model.trees, cfg.model.width, cfg.model.depth = measured["trees"], model.feature.shape[1], model.depth
    run = Run(cfg, model, spec, prepared.preprocess)
    loss_fn = loss_for(cfg.train, prepared)
    val = Validation(run.outputs, prepared.val_inputs, prepared.val_y, loss_fn,
                     lambda out, y: score_outputs(prepared.task, out, y))(model) if len(prepared.val_y) else {}
    state = TrainState(model, None, LoopSettings(epochs=1, lr=cfg.train.lr or 0.0), total_steps=measured["rounds"],
                       step=measured["rounds"], lr=0.0, started=started)
    with torch.no_grad():
        state.train_loss = float(loss_fn(run.outputs(prepared.train_inputs), prepared.train_y))
    run.history = [{"epoch": 1, "step": measured["best_round"], "train_loss": state.train_loss, **val,
                    "seconds": round(time.perf_counter() - started, 3)}]
    prepared.notes.append(f"boosted: LightGBM, {measured['trees']} trees ({measured['best_round']} rounds: the best "
                          "on the validation rows, early stopping)")
    return Trained(run, state, time.perf_counter() - started, 1, val.get("val_loss", math.inf))


def choose(trained: list[Trained]) -> Trained:
    """Return the simplest candidate unless bigger ones beat its validation loss by > 5%, then
    the lowest validation loss among those.

    Candidates come simplest first; on a few dozen validation rows a small win is noise, and
    an early-stopped MLP reports its best epoch's loss (a minimum over epochs, biased low)
    while the linear model reports its last: the simpler model is the safer bet.
    """
    simplest = best = trained[0]
    for candidate in trained[1:]:  # each against the simplest; the lowest loss among those that beat it
        if candidate.best_val_loss < simplest.best_val_loss * (1 - OCCAM_MARGIN) and \
                (best is simplest or candidate.best_val_loss < best.best_val_loss):
            best = candidate
    return best


def refits(best: Trained, trained: list[Trained]) -> bool:
    """Zero-config's convex candidate (the linear model, or a linear probe of a frozen
    pretrained encoder: both solved by L-BFGS), once chosen, is refit on every row; so is a
    linear probe named alone (with few labels every row counts, and nothing stops early)."""
    t = best.run.config.train
    return t.optimizer == "lbfgs" and (len(trained) > 1 or t.freeze == 1)


def refit_on_all_rows(best: Trained, prepared: Prepared) -> Trained:
    """Return the chosen linear model retrained, same config, on training + validation rows.

    With a few hundred rows the validation split is too valuable to leave out of the final
    fit; a linear model trained to convergence needs no validation rows to stop on (measured
    on diabetes over 5 splits: R² 0.423 without the refit, 0.428 with it; RidgeCV 0.429).
    """
    merged = replace(prepared,
                     train_inputs=tuple(torch.cat([a, b]) for a, b in zip(prepared.train_inputs, prepared.val_inputs)),
                     train_y=torch.cat([prepared.train_y, prepared.val_y]))
    cfg = best.run.config.with_values({"train.weight_decay": None}) if best.l2_chosen else best.run.config
    refit = train_candidate(cfg, merged, None, False, budget=Budget(cfg.train.time_limit))
    prepared.notes.append(f"the {best.run.config.model.name} model was refit on training + validation rows "
                          "(so its validation metrics are optimistic)")
    return Trained(refit.run, refit.state, refit.seconds + best.seconds, best.best_epoch, best.best_val_loss)
