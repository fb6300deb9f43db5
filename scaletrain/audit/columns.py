"""Column checks: constant and mostly-missing columns, a target leaked into a feature, class
balance, and categories the training rows never saw."""
from __future__ import annotations

import numpy as np
import pandas as pd

LEAK_SCORE = 0.97      # one column alone predicting the target this well is suspect (a copy of it, under 2% label noise: 0.98)
MOSTLY_MISSING = 0.5
LEAK_ROWS = 20_000     # rows the leak check reads (a sample of larger tables)


def constant_and_missing(frame: pd.DataFrame) -> list[dict]:
    findings = []
    constant = [c for c in frame.columns if frame[c].nunique(dropna=False) <= 1]
    if constant:
        findings.append({"check": "constant columns", "severity": "low", "columns": constant,
                         "what": f"{len(constant)} column(s) hold one value: {', '.join(constant[:10])}",
                         "do": "they carry nothing; scaletrain leaves them out"})
    share = frame.isna().mean()
    mostly = {c: round(float(v), 3) for c, v in share.items() if v >= MOSTLY_MISSING}
    if mostly:
        findings.append({"check": "mostly missing", "severity": "medium", "columns": list(mostly), "shares": mostly,
                         "what": "column(s) mostly missing: " + ", ".join(f"{c} ({100 * v:.0f}%)" for c, v in mostly.items()),
                         "do": "check how they were collected; a missing indicator is kept for each"})
    return findings


def _column_score(x: pd.Series, y: pd.Series, classification: bool, seed: int) -> float:
    """Cross-validated score of the target from this one column: balanced accuracy (or R²) of
    a tree on numbers (leaves of 5 rows or more; depth-limited trees split ten ordered classes
    greedily and miss some), of each category's majority class (or mean) on categories."""
    from sklearn.metrics import balanced_accuracy_score, r2_score
    from sklearn.model_selection import KFold
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
    predicted = np.empty(len(y), dtype=object if classification else float)
    for train, held in KFold(3, shuffle=True, random_state=seed).split(x):
        if numeric:
            tree = (DecisionTreeClassifier if classification else DecisionTreeRegressor)(min_samples_leaf=5, random_state=seed)
            values = x.to_numpy(float)
            fill = np.nanmedian(values[train]) if np.isfinite(values[train]).any() else 0.0
            values = np.where(np.isfinite(values), values, fill)[:, None]
            tree.fit(values[train], y.iloc[train])
            predicted[held] = tree.predict(values[held])
        else:
            keys = x.astype(str)
            table = y.iloc[train].groupby(keys.iloc[train]).agg(lambda s: s.mode().iloc[0] if classification else s.mean())
            fallback = y.iloc[train].mode().iloc[0] if classification else y.iloc[train].mean()
            predicted[held] = keys.iloc[held].map(table).fillna(fallback).to_numpy()
    if classification:
        return float(balanced_accuracy_score(y.astype(str), pd.Series(predicted).astype(str)))
    return float(r2_score(y.to_numpy(float), predicted.astype(float)))


def leaked_columns(frame: pd.DataFrame, target: str, classification: bool, seed: int = 0) -> list[dict]:
    """Columns that alone predict the target almost perfectly."""
    rows = frame[frame[target].notna()]
    if len(rows) > LEAK_ROWS:
        rows = rows.sample(LEAK_ROWS, random_state=seed)
    rows = rows.reset_index(drop=True)
    y = rows[target].astype(str) if classification else rows[target].astype(float)
    scores = {c: _column_score(rows[c], y, classification, seed) for c in rows.columns if c != target
              and rows[c].nunique() > 1}
    leaks = {c: round(s, 4) for c, s in scores.items() if s >= LEAK_SCORE}
    if not leaks:
        return []
    measure = "balanced accuracy" if classification else "R²"
    return [{"check": "target leaked into a feature", "severity": "high", "columns": list(leaks), "scores": leaks,
             "what": "alone, " + ", ".join(f"'{c}' predicts '{target}' at {measure} {s:.3f}" for c, s in leaks.items()),
             "do": "a feature known only after the label (or a copy of it) inflates every score; drop it with "
                   "--set data.columns={name: drop} unless it is truly available at prediction time"}]


def balance(labels: pd.Series, counts: pd.Series | None = None) -> list[dict]:
    """The classes' counts (from the labels, or given), largest first."""
    counts = (labels.astype(str).value_counts() if counts is None else counts.sort_values(ascending=False))
    counts = counts[counts > 0].astype(int)
    if counts.empty:
        return []
    ratio = float(counts.iloc[0] / max(counts.iloc[-1], 1))
    finding = {"check": "class balance", "severity": "medium" if ratio >= 10 else "info",
               "counts": {str(k): int(v) for k, v in counts.items()},
               "what": f"{len(counts)} classes; the largest is {ratio:.1f}× the rarest ({counts.index[-1]}: {counts.iloc[-1]})",
               "do": "with 10× or more, read macro F1 and the per-class table, not accuracy"}
    return [finding]


def coverage(frame: pd.DataFrame, split: np.ndarray, columns: list[str]) -> list[dict]:
    """Categories of validation/test rows that no training row has."""
    unseen = {}
    train = frame[split == "train"]
    others = frame[split != "train"]
    for c in columns:
        known = set(train[c].dropna().astype(str))
        new = others[c].dropna().astype(str)
        count = int((~new.isin(known)).sum())
        if count:
            unseen[c] = count
    if not unseen:
        return []
    return [{"check": "unseen categories", "severity": "low", "columns": list(unseen), "counts": unseen,
             "what": "validation/test rows with categories no training row has: "
                     + ", ".join(f"{c} ({n})" for c, n in unseen.items()),
             "do": "they are read as 'unknown'; collect more data of them if they matter"}]
