"""k-fold cross-validation of any config: each metric as mean ± std over the folds.

Folds come from scikit-learn (StratifiedKFold for classification, KFold for regression).
Each fold is a complete `fit` on the other folds' rows, its preprocessing fitted there alone
and scored on the held-out fold, so no fold's rows leak into its own preprocessing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaletrain.errors import ConfigError


def fold_indices(y: pd.Series, k: int, task: str, seed: int = 0) -> list[np.ndarray]:
    """Return the held-out row positions of each of k folds: disjoint, covering every row,
    stratified by class for classification."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if k < 2 or k > len(y):
        raise ConfigError(f"--cv {k}: give between 2 and the number of rows ({len(y)}) folds")
    if task == "regression":
        splitter = KFold(k, shuffle=True, random_state=seed)
    else:
        counts = y.astype(str).value_counts()
        if counts.min() < k:
            raise ConfigError(f"--cv {k}: class {counts.idxmin()!r} has only {counts.min()} row(s), fewer than "
                              f"the {k} folds; use fewer folds")
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(y)), y.astype(str))]


def cross_validate(data, target: str | None = None, *, k: int = 5, config=None, sets: list[str] | None = None,
                   verbose: bool = False, on_fold=None, **overrides) -> dict:
    """Fit k times on a table, each time holding one fold out as the test set; return
    {"k", "task", "folds": [test metrics per fold], "mean": {...}, "std": {...}}. Overrides
    (epochs, time_limit, ...) apply to every fold's fit; `on_fold(i, metrics)` is called after
    each fold (a tuner prunes there)."""
    from scaletrain.api import fit
    from scaletrain.config import make_config
    from scaletrain.data.schema import find_target, infer_task
    from scaletrain.data.sources import load_source

    cfg = make_config(config.to_dict() if hasattr(config, "to_dict") else config, sets)
    source = load_source(data)
    if source.kind != "table":
        raise ConfigError(f"--cv works on tables; '{source.name}' is {source.kind} data "
                          "(hold out a test set with --test instead)")
    frame = source.frame.reset_index(drop=True)
    column = find_target(frame, target or cfg.data.target, source.name)
    frame = frame[frame[column].notna()].reset_index(drop=True)
    task = infer_task(frame[column], cfg.data.task)
    seed = cfg.train.seed if overrides.get("seed") is None else overrides["seed"]
    folds = []
    for held in fold_indices(frame[column], k, task, seed=seed):
        rest = np.setdiff1d(np.arange(len(frame)), held)
        run = fit(frame.iloc[rest], column, test=frame.iloc[held], out=None, config=config, sets=sets,
                  verbose=verbose, **overrides)
        folds.append(run.metrics["test"])
        if on_fold is not None:
            on_fold(len(folds) - 1, run.metrics["test"])
    names = [n for n in folds[0] if all(isinstance(f.get(n), (int, float)) for f in folds)]
    values = {n: np.array([f[n] for f in folds], dtype=float) for n in names}
    return {"k": k, "task": task, "folds": folds,
            "mean": {n: float(v.mean()) for n, v in values.items()},
            "std": {n: float(v.std(ddof=1)) for n, v in values.items()}}
