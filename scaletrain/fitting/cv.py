"""k-fold cross-validation of any config: each metric as mean ± std over the folds.

Folds come from scikit-learn (StratifiedKFold for classification, KFold for regression).
Each fold is a complete `fit` on the other folds' rows, its preprocessing fitted there alone
and scored on the held-out fold, so no fold's rows leak into its own preprocessing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaletrain.config import Config
from scaletrain.data.schema import find_target
from scaletrain.errors import ConfigError
from scaletrain.fitting.pipeline import FitOptions, fit_run
from scaletrain.modalities import load_source, modality
from scaletrain.tasks import task_of
from scaletrain.tasks.infer import infer_task


def fold_indices(y: pd.Series, k: int, task: str, seed: int = 0) -> list[np.ndarray]:
    """Return the held-out row positions of each of k folds: disjoint, covering every row,
    stratified by class for classification."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if k < 2 or k > len(y):
        raise ConfigError(f"--cv {k}: give between 2 and the number of rows ({len(y)}) folds")
    if not task_of(task).classifies:
        splitter = KFold(k, shuffle=True, random_state=seed)
    else:
        counts = y.astype(str).value_counts()
        if counts.min() < k:
            raise ConfigError(f"--cv {k}: class {counts.idxmin()!r} has only {counts.min()} row(s), fewer than "
                              f"the {k} folds; use fewer folds")
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(y)), y.astype(str))]


def cross_validate_config(data, config: Config, *, k: int = 5, verbose: bool = False, on_fold=None) -> dict:
    """Fit the config k times on a table, each time holding one fold out as the test set;
    return {"k", "task", "folds": [test metrics per fold], "mean": {...}, "std": {...}}.
    `on_fold(i, metrics)` is called after each fold (a tuner prunes there)."""
    source = load_source(data)
    if source.streamed or not modality(source.kind).cross_validates:
        raise ConfigError(f"--cv works on tables; '{source.name}' is {source.kind} data "
                          "(hold out a test set with --test instead)")
    frame = source.frame.reset_index(drop=True)
    column = find_target(frame, config.data.target, source.name)
    frame = frame[frame[column].notna()].reset_index(drop=True)
    task = infer_task(frame[column], config.data.task)
    fold_config = config.with_values({"data.target": column})
    folds = []
    for held in fold_indices(frame[column], k, task, seed=config.train.seed):
        rest = np.setdiff1d(np.arange(len(frame)), held)
        run = fit_run(fold_config, frame.iloc[rest], test=frame.iloc[held], options=FitOptions(verbose=verbose))
        folds.append(run.metrics["test"])
        if on_fold is not None:
            on_fold(len(folds) - 1, run.metrics["test"])
    names = [n for n in folds[0] if all(isinstance(f.get(n), (int, float)) for f in folds)]
    values = {n: np.array([f[n] for f in folds], dtype=float) for n in names}
    return {"k": k, "task": task, "folds": folds,
            "mean": {n: float(v.mean()) for n, v in values.items()},
            "std": {n: float(v.std(ddof=1)) for n, v in values.items()}}


def out_of_fold_proba(source, config: Config, k: int = 5) -> tuple[np.ndarray, list]:
    """Class probabilities for every labelled row (table rows or images) from the model fitted
    on the other k − 1 folds: what confident learning needs (no row's own label seen).
    Returns (probabilities in the source's order, the classes)."""
    from scaletrain.data.sources import subset_source

    labels = pd.Series(source.frame[config.data.target] if source.frame is not None else source.items.labels)
    task = infer_task(labels.dropna(), "classification")  # binary or multiclass, by the label count
    proba, classes = None, sorted(labels.dropna().astype(str).unique())
    for held in fold_indices(labels.astype(str), k, task, seed=config.train.seed):
        rest = np.setdiff1d(np.arange(len(labels)), held)
        run = fit_run(config, subset_source(source, rest))
        assessed = run.assess(subset_source(source, held))
        if proba is None:
            proba = np.zeros((len(labels), len(run.classes)))
            classes = [str(c) for c in run.classes]
        order = [classes.index(str(c)) for c in run.classes]
        proba[held[assessed.rows][:, None], np.array(order)[None, :]] = assessed.proba
    return proba, classes
