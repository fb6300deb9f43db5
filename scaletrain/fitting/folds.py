"""Small data: candidates compared by k-fold cross-validation, and the winner's fold models
bagged into one ensemble where that beats the single model.

One small validation split cannot choose between models (a few dozen rows: a 10x gap in loss
can be noise), so below CV_ROWS the candidates are cross-validated on the training rows, and a
bigger model is kept only when it wins by more than the folds' noise. The validation rows stay
out of every fold: they then judge, honestly, whether the fold models averaged (bagging, as
AutoGluon does on small tables) beat the single model.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from scaletrain.config import Config
from scaletrain.data.prepared import Prepared
from scaletrain.data.split import kfold_splits
from scaletrain.fitting.candidates import Trained, label_of, train_candidate
from scaletrain.models.ensemble import Ensemble, average_for
from scaletrain.parallel import distributed
from scaletrain.run import Run
from scaletrain.tasks import task_of
from scaletrain.train.setup import loss_for

CV_ROWS = 2000      # training + validation rows under which candidates are compared by cross-validation
# ... and input values (rows x values per row) under which: a row of free text is hundreds of
# token ids, and five folds of each candidate over them cost minutes (BBC News: 308 s against
# 4 s for TF-IDF + LR) for a choice one validation split makes as well there
CV_CELLS = 1_000_000
CV_FOLDS = 5
CV_REPEATS_UNDER = 500  # training rows under which the folds are cut twice (a fold of ~20 rows is noisy)


def cross_validated(cfg: Config, prepared: Prepared, epochs: int, seed: int) -> tuple[dict, list[Run], torch.Tensor]:
    """Fold losses and scores of one candidate config on the training rows, its fold models and
    its out-of-fold outputs (each training row's mean over the fold models that held it out):
    each fold trained for `epochs` (the epoch its early stopping chose, or its own count) without
    the held-out fold, then scored on it."""
    inputs, y = prepared.train_inputs, prepared.train_y
    fold_cfg = cfg.with_values({"train.epochs": max(1, epochs), "train.early_stopping": 0, "train.lr_find": False,
                                "train.time_limit": None})
    losses, scores, runs, rows, started = [], [], [], [], time.perf_counter()
    held_out, times = None, torch.zeros(len(y))
    repeats = 2 if len(y) < CV_REPEATS_UNDER else 1
    for kept, held in kfold_splits(y.numpy(), task_of(prepared.task).classifies, seed, CV_FOLDS, repeats):
        kept, held = torch.from_numpy(kept), torch.from_numpy(held)
        fold = replace(prepared, train_inputs=tuple(x[kept] for x in inputs), train_y=y[kept],
                       val_inputs=tuple(x[held] for x in inputs), val_y=y[held], train_rows=None,
                       train_class_counts=None, notes=[])
        result = train_candidate(fold_cfg, fold, None, False)
        outputs = result.run.outputs(fold.val_inputs).float()
        held_out = torch.zeros((len(y), *outputs.shape[1:])) if held_out is None else held_out
        held_out[held] += outputs
        times[held] += 1
        losses.append(result.run.history[-1]["val_loss"])
        scores.append(result.run.history[-1]["val_score"])
        runs.append(result.run)
        rows.append(len(kept))
    return {"loss": float(torch.tensor(losses).mean()), "loss_std": float(torch.tensor(losses).std()),
            "score": float(torch.tensor(scores).mean()), "score_std": float(torch.tensor(scores).std()),
            "folds": len(losses), "fold_losses": losses, "fold_rows": rows, "seconds": round(time.perf_counter() - started, 3)}, \
        runs, held_out / times.clamp(min=1).view(-1, *[1] * (held_out.dim() - 1))


def choose_by_cross_validation(trained: list[Trained], prepared: Prepared) -> tuple[Trained, dict, list[Run], list]:
    """The simplest candidate unless bigger ones' fold losses beat it by more than their noise
    (the paired differences' mean by more than one standard error), then the one of those with
    the lowest mean loss (trees or an MLP: neither is the simpler; ISLR-style Ames housing kept
    the MLP at 0.818 test R² where the trees reach 0.89 when each had to beat the one before);
    every candidate's cross-validated loss and score; the chosen one's fold models; and each
    candidate's out-of-fold outputs (the blend's weights are chosen on them)."""
    seed = trained[0].run.config.train.seed
    results, fold_runs, held_out = {}, {}, []
    for t in trained:
        name = label_of(t.run.config)
        results[name], fold_runs[name], outputs = cross_validated(t.run.config, prepared, t.best_epoch, seed)
        held_out.append(outputs)
    simplest = torch.tensor(results[label_of(trained[0].run.config)]["fold_losses"])
    best, best_loss = trained[0], math.inf
    for candidate in trained[1:]:  # each against the simplest; the lowest mean loss among those that beat it
        losses = torch.tensor(results[label_of(candidate.run.config)]["fold_losses"])
        difference = losses - simplest
        if difference.mean() + difference.std() / math.sqrt(len(difference)) < 0 and losses.mean() < best_loss:
            best, best_loss = candidate, float(losses.mean())
    return best, results, fold_runs[label_of(best.run.config)], held_out


def cross_validates(trained: list[Trained], prepared: Prepared) -> bool:
    """Small in-memory data with several candidates (or an ensemble asked for), no time limit to share."""
    t = trained[0].run.config.train
    wanted = (t.choose_by == "cv" and len(trained) > 1) or t.ensemble == "on"
    return (wanted and prepared.shard_url is None and len(prepared.val_y) > 0 and not t.time_limit
            and prepared.n_train + len(prepared.val_y) < CV_ROWS and not distributed.world().active
            and (prepared.n_train + len(prepared.val_y)) * _values_per_row(prepared) < CV_CELLS)


def _values_per_row(prepared: Prepared) -> int:
    return sum(int(x[:1].numel()) for x in prepared.train_inputs) if len(prepared.train_y) else 0


def bagged(best: Trained, members: list[Run], cv: dict, prepared: Prepared) -> tuple[Trained, dict]:
    """The fold models averaged into one model, kept when `train.ensemble` is on, or (auto) when
    its validation loss is below the single model's; and what was measured. The single model's
    figure is the early-stopped one (its best epoch chosen on these rows): the comparison
    favours it, so an ensemble is kept only when it clearly helps."""
    mode, run = best.run.config.train.ensemble, best.run
    spec = replace(run.spec, members=len(members), average=average_for(prepared.task, run.spec.n_out))
    ensemble = Run(run.config, Ensemble([m.model for m in members], spec.average), spec, run.preprocess,
                   history=run.history)
    loss_fn = loss_for(run.config.train, prepared)
    val_loss, seconds = {}, {}
    for name, candidate in (("single", run), ("ensemble", ensemble)):
        started = time.perf_counter()
        val_loss[name] = float(loss_fn(candidate.outputs(prepared.val_inputs), prepared.val_y))
        seconds[name] = round(time.perf_counter() - started, 4)
    keep = mode == "on" or (mode == "auto" and val_loss["ensemble"] < val_loss["single"])
    info = {"kept": keep, "val_loss": val_loss, "train_seconds": cv["seconds"],
            "predict_seconds_on_validation": seconds,
            "members": [{"fold": i + 1, "train_rows": rows, "held_out_loss": loss}
                        for i, (rows, loss) in enumerate(zip(cv["fold_rows"], cv["fold_losses"]))]}
    prepared.note(f"the {len(members)} fold models of {run.config.model.name} averaged: validation loss "
                  f"{val_loss['ensemble']:.4f} against {val_loss['single']:.4f} for the single model; "
                  + ("the ensemble is kept" if keep else "the single model is kept"))
    if not keep:
        return best, info
    return Trained(ensemble, best.state, best.seconds + cv["seconds"], best.best_epoch, val_loss["ensemble"]), info
