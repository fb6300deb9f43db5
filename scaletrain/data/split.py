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


def split_items(items, test_items, data_cfg, seed: int, name: str, what: str) -> tuple:
    """(task, train, val, test) of labelled items (images, clips: `data.sources.Items`): the
    task inferred from their labels, the test split held out (stratified) unless `test_items`
    are given, validation from the rest. `what` names the items in errors ("images")."""
    import pandas as pd

    from scaletrain.data.prepared import require_rows
    from scaletrain.data.schema import check_target
    from scaletrain.errors import DataError
    from scaletrain.tasks import task_of
    from scaletrain.tasks.infer import infer_task

    if data_cfg.preprocess_from:
        raise DataError(f"data.preprocess_from fits a table's preprocessing; a run on {what} fits its own statistics "
                        "on its training items")
    if items.labels is None:
        raise DataError(f"'{name}' has {what} but no labels; put them in one subfolder per class")
    task = infer_task(pd.Series(items.labels), data_cfg.task)
    check_target(pd.Series(items.labels), task, "label")
    stratify = task_of(task).classifies
    if test_items is None:
        keep, held = split_indices(len(items), items.labels if stratify else None, data_cfg.test_fraction, seed)
        pool, test_items = items.subset(keep), items.subset(held)
    else:
        pool = items
    tr, va = split_indices(len(pool), pool.labels if stratify else None, data_cfg.val_fraction, seed + 1)
    train, val = pool.subset(tr), pool.subset(va)
    require_rows(name, len(train), len(val), data_cfg.val_fraction)
    return task, train, val, test_items


def split_rows(frame, target: str, stratify: bool, test, data_cfg, seed: int, name: str) -> tuple:
    """(train, validation, test) rows of a labelled frame: the test rows held out (stratified
    by the target where `stratify`) unless `test` (a Source) brings its own, validation from the
    rest. The rows keep their labels in `frame` (errors name them)."""
    from scaletrain.data.prepared import require_rows
    from scaletrain.errors import TargetError

    labels = frame[target].to_numpy() if stratify else None
    if test is not None:
        if test.frame is None or target not in test.frame.columns:
            raise TargetError(f"test data '{test.name}' has no target column '{target}'")
        pool, test_frame = frame, test.frame
    else:
        keep, held = split_indices(len(frame), labels, data_cfg.test_fraction, seed)
        pool, test_frame = frame.iloc[keep], frame.iloc[held]
    tr, va = split_indices(len(pool), pool[target].to_numpy() if stratify else None, data_cfg.val_fraction, seed + 1)
    train, val = pool.iloc[tr], pool.iloc[va]
    require_rows(name, len(train), len(val), data_cfg.val_fraction)
    return train, val, test_frame


def leave_last_out(users: np.ndarray, times: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) row positions of an interactions table: each user's last interaction by time
    held out (the later row where times tie), or without times a random one; a user with a
    single interaction keeps it (nothing left to learn them from)."""
    import pandas as pd

    order = np.random.default_rng(seed).permutation(len(users)) if times is None else np.arange(len(users))
    frame = pd.DataFrame({"user": users, "time": np.zeros(len(users)) if times is None else times,
                          "order": order, "row": np.arange(len(users))})
    frame = frame.sort_values(["user", "time", "order"], kind="stable")
    last = ~frame["user"].duplicated(keep="last").to_numpy()
    several = frame.groupby("user")["row"].transform("size").to_numpy() > 1
    held = np.sort(frame["row"].to_numpy()[last & several])
    return np.setdiff1d(np.arange(len(users)), held), held


def random_per_user(users: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) row positions with `fraction` of each user's rows held out at random (rounded,
    at least one where the user has two or more, never all of them)."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(users)), users))
    counts = np.bincount(users)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(users)) - np.repeat(starts, counts)  # position within the user's shuffled rows
    n_held = np.where(counts > 1, np.clip(np.round(counts * fraction), 1, counts - 1), 0)
    held = np.sort(order[rank < np.repeat(n_held, counts)])
    return np.setdiff1d(np.arange(len(users)), held), held
