"""The boosted-trees candidate (`model.name=boosted`): LightGBM grown on the encoded table (the
dense block and category codes the networks read), stopped early on the validation rows, then
compiled into a TreeEnsemble (models/trees.py) so that everything after training treats it as
one more model.

LightGBM, not a home-made booster: it is the library practitioners reach for and the fastest
on CPU; picked over scikit-learn's HistGradientBoosting by measurement (BENCHMARKS.md).
"""
from __future__ import annotations

import numpy as np
import torch

from scaletrain.data.prepared import Prepared
from scaletrain.errors import ConfigError
from scaletrain.models.trees import TreeEnsemble, from_lightgbm
from scaletrain.tasks import MULTICLASS, task_of
from scaletrain.tasks.regression import level_values
from scaletrain.train.losses import nearest_level

ROUNDS = 2000        # at most; early stopping on the validation rows ends it far sooner
PATIENCE = 50        # rounds without a better validation loss
LEARNING_RATE = 0.05  # half LightGBM's default: more, smaller steps, chosen by early stopping
# Below this many rows LightGBM grows its trees on one thread: a round there takes microseconds,
# and its OpenMP threads spin-wait for each other; beside another busy process (a second job, a
# test run) that turned a 65 s zero-config fit of ISLR Default into 828 s on this 2-core machine.
ONE_THREAD_ROWS = 20_000


def encoded_rows(inputs: tuple) -> np.ndarray:
    """The rows as the trees read them: dense features then category codes."""
    if len(inputs) > 2:
        raise ConfigError("model.name=boosted reads numbers and categories; this table has free text or images: "
                          "use linear, mlp or transformer")
    blocks = [inputs[0].float()] + ([inputs[1].float()] if len(inputs) > 1 and inputs[1].shape[1] else [])
    return torch.cat(blocks, dim=1).numpy()


def lightgbm_params(task: str, n_classes: int, threads: int, seed: int, levels: bool = False) -> dict:
    """LightGBM's settings; `levels`: a regression modelled level by level (train.loss=levels),
    one tree per level and round, as for classes, so its outputs are logits like the networks'."""
    objective = MULTICLASS.boosting_objective if levels else task_of(task).boosting_objective
    params = {"objective": objective, "learning_rate": LEARNING_RATE, "num_threads": threads, "seed": seed,
              "deterministic": True, "force_row_wise": True, "verbosity": -1}
    return params | ({"num_class": n_classes} if objective == MULTICLASS.boosting_objective else {})


def fit_boosted(prepared: Prepared, outputs: int, threads: int, seed: int, balanced: bool,
                rounds: int | None = None) -> tuple[TreeEnsemble, dict]:
    """Grow the trees on the training rows, stopped on the validation rows (or `rounds` of them,
    the validation rows unseen: a cross-validation fold scores on them); return the compiled
    module and what training measured (rounds, the best round)."""
    import lightgbm as lgb

    if prepared.shard_url is not None:
        raise ConfigError("model.name=boosted grows trees on rows held in memory; streamed shards train networks")
    x, y, val_y = encoded_rows(prepared.train_inputs), prepared.train_y, prepared.val_y
    levels = level_values(prepared.target) if outputs > 1 and not task_of(prepared.task).classifies else None
    if levels is not None:
        y, val_y = nearest_level(y, levels), nearest_level(val_y, levels)
    y, val_y = y.numpy(), val_y.numpy()
    weights = None
    if balanced and task_of(prepared.task).classifies:
        counts = np.bincount(y.astype(int), minlength=prepared.n_classes).astype(float)
        weights = (len(y) / (len(counts) * np.maximum(counts, 1)))[y.astype(int)]
    train = lgb.Dataset(x, y, weight=weights, free_raw_data=False)
    params = lightgbm_params(prepared.task, prepared.n_classes or outputs, 1 if len(y) < ONE_THREAD_ROWS else threads,
                             seed, levels is not None)
    callbacks, sets = [], []
    if len(prepared.val_y) and rounds is None:
        sets = [lgb.Dataset(encoded_rows(prepared.val_inputs), val_y, reference=train)]
        callbacks = [lgb.early_stopping(PATIENCE, verbose=False)]
    # keep_training_booster: no text round trip of the model that the conversion below reads once
    booster = lgb.train(params, train, num_boost_round=ROUNDS if sets else rounds or 200, valid_sets=sets,
                        callbacks=callbacks, keep_training_booster=True)
    best = booster.best_iteration or booster.current_iteration()
    model = from_lightgbm(booster.model_to_string(num_iteration=best), outputs)
    return model.eval(), {"rounds": booster.current_iteration(), "best_round": best, "trees": int(model.feature.shape[0])}
