"""Seeded, stratified train/validation/test splits (scikit-learn does the splitting)."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def _stratify(labels: np.ndarray | None, n_holdout: int):
    """Return labels to stratify on, or None where some class is too rare for it."""
    if labels is None:
        return None
    _, counts = np.unique(labels.astype(str), return_counts=True)
    if counts.min() < 2 or n_holdout < len(counts):
        return None
    return labels.astype(str)


def split_indices(n: int, labels: np.ndarray | None, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (keep, holdout) row indices with `fraction` held out, stratified by labels."""
    index = np.arange(n)
    n_holdout = int(round(n * fraction))
    if fraction <= 0 or n_holdout == 0:
        return index, index[:0]
    keep, holdout = train_test_split(index, test_size=n_holdout, random_state=seed,
                                     stratify=_stratify(labels, n_holdout))
    return np.sort(keep), np.sort(holdout)


def kfold_splits(labels: np.ndarray, classified: bool, seed: int, k: int = 5, repeats: int = 1):
    """(kept, held) row positions of k folds (cut `repeats` times with fresh shuffles), stratified
    by class where every class has k rows."""
    from sklearn.model_selection import KFold, RepeatedKFold, RepeatedStratifiedKFold, StratifiedKFold

    stratified = classified and int(np.unique(labels, return_counts=True)[1].min()) >= k
    if repeats > 1:
        splitter = (RepeatedStratifiedKFold if stratified else RepeatedKFold)(n_splits=k, n_repeats=repeats,
                                                                              random_state=seed)
    else:
        splitter = (StratifiedKFold if stratified else KFold)(k, shuffle=True, random_state=seed)
    yield from splitter.split(np.zeros(len(labels)), labels)
