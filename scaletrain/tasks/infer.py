"""Which task a target column asks for, read from its values (or the task the config forces)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaletrain.tasks import TASKS


def infer_task(y: pd.Series, task: str) -> str:
    """Return binary, multiclass or regression from the target's values (or the forced task)."""
    values = y.dropna()
    n_unique = values.nunique()
    if task in TASKS:
        if TASKS[task].two_classes and n_unique != 2:
            from scaletrain.errors import TargetError

            raise TargetError(f"task {task} needs a target of two values (clicked or not); '{y.name}' holds "
                              f"{n_unique}: map it to two, e.g. rating >= 4")
        return task
    if task == "classification":
        return "binary" if n_unique == 2 else "multiclass"
    if values.dtype.kind in "fciu" and n_unique > 2 and n_unique == len(values):
        return "regression"  # numbers that never repeat: as classes, each would be seen once
    if looks_like_counts(values):
        return "regression"
    if values.dtype.kind in "fc":
        integral = np.all(np.mod(values, 1) == 0)
        if n_unique == 2:
            return "binary"
        if integral and n_unique <= 20 and n_unique <= max(2, len(values) // 10):
            return "multiclass"
        return "regression"
    if values.dtype.kind in "iu":
        if n_unique == 2:
            return "binary"
        return "multiclass" if n_unique <= max(20, int(len(values) ** 0.5)) and n_unique <= 200 else "regression"
    return "binary" if n_unique == 2 else "multiclass"


def looks_like_counts(values: pd.Series) -> bool:
    """Whole numbers from 0 whose frequencies fall away from 0 — doctor visits, claims, defects:
    a quantity to regress, not classes. AER's DoctorVisits (0-9 visits) read as ten classes
    scored R² -1.64 against 0.18 as a count. Class labels coded 0..k (digits) are about even,
    ratings start above 0: neither has a most frequent 0 and a top value ten times rarer."""
    if values.dtype.kind not in "fiu" or not len(values) or not np.all(np.mod(values, 1) == 0):
        return False
    frequency = values.value_counts().sort_index()
    return (len(frequency) >= 5 and frequency.index[0] == 0 and frequency.iloc[0] == frequency.max()
            and frequency.iloc[-1] * 10 <= frequency.iloc[0] and frequency.iloc[:3].is_monotonic_decreasing)
