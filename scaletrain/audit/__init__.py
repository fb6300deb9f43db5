"""The data audit: duplicates within and across the splits, likely label errors, class
balance and coverage, constant and mostly-missing columns, a target leaked into a feature.
Every finding names its rows or columns and what to do. `audit_table` and `audit_images` take
data and (optionally) out-of-sample probabilities; `run_findings` is the part every run's
report carries (from the run's own splits and its test predictions)."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from scaletrain.audit.columns import balance, constant_and_missing, coverage, leaked_columns
from scaletrain.audit.duplicates import duplicate_findings, exact_pairs, image_keys, near_image_pairs, near_text_pairs, row_keys
from scaletrain.audit.labels import label_suspects

__all__ = ["audit_table", "audit_images", "run_findings", "audit_section"]
SEVERITY = {"high": 0, "medium": 1, "low": 2, "info": 3}


def _text_columns(frame: pd.DataFrame) -> list[str]:
    """Object columns of prose: long values, mostly distinct."""
    out = []
    for c in frame.columns:
        if frame[c].dtype == object:
            values = frame[c].dropna().astype(str)
            if len(values) and values.str.len().mean() > 40 and values.nunique() > 0.5 * len(values):
                out.append(c)
    return out


def audit_table(frame: pd.DataFrame, target: str | None, split: np.ndarray, proba: np.ndarray | None = None,
                classes: list | None = None, classification: bool = True) -> list[dict]:
    """Findings for a table whose rows are in `split` ('train', 'val', 'test' per row)."""
    frame = frame.reset_index(drop=True)
    ids = np.arange(len(frame))
    features = frame.drop(columns=[target]) if target else frame
    exact = row_keys(features)
    findings = duplicate_findings(exact_pairs(exact), split, ids, "exact duplicates")
    near = row_keys(features, near=True)
    exactly_same = {int(i) for g in exact_pairs(exact) for i in g}
    near_groups = [g for g in exact_pairs(near) if not set(map(int, g)) <= exactly_same]
    findings += duplicate_findings(near_groups, split, ids, "near duplicates (numbers to 3 digits, text case)")
    for column in _text_columns(features):
        pairs = near_text_pairs(features[column].fillna("").astype(str).tolist())
        findings += duplicate_findings(pairs, split, ids, f"near-duplicate texts in '{column}' (MinHash, Jaccard ≥ 0.8)")
    findings += constant_and_missing(features)
    if target:
        findings += leaked_columns(frame, target, classification)
        if classification:
            findings += balance(frame[target].dropna())
    categorical = [c for c in features.columns if features[c].dtype == object and c not in _text_columns(features)]
    findings += coverage(features, split, categorical)
    if proba is not None and classes is not None and target:
        labels = pd.Categorical(frame[target].astype(str), categories=[str(c) for c in classes]).codes
        known = labels >= 0
        findings += label_suspects(labels[known], proba[known], ids[known], classes)
    return sorted(findings, key=lambda f: SEVERITY[f["severity"]])


def audit_images(images: np.ndarray, labels: np.ndarray | None, split: np.ndarray, proba: np.ndarray | None = None,
                 classes: list | None = None) -> list[dict]:
    """Findings for (n, height, width[, channels]) uint8 images."""
    ids = np.arange(len(images))
    exact = np.array([int.from_bytes(hashlib.blake2b(im.tobytes(), digest_size=8).digest(), "little") for im in images],
                     dtype=np.uint64)
    findings = duplicate_findings(exact_pairs(exact), split, ids, "identical images")
    exactly_same = {int(i) for g in exact_pairs(exact) for i in g}
    pairs = [p for p in near_image_pairs(image_keys(images)) if not set(p) <= exactly_same]
    findings += duplicate_findings(pairs, split, ids, "near-duplicate images (pHash within 4 bits)")
    if labels is not None:
        findings += balance(pd.Series(labels))
        if proba is not None and classes is not None:
            codes = pd.Categorical(pd.Series(labels).astype(str), categories=[str(c) for c in classes]).codes
            findings += label_suspects(codes, proba, ids, classes)
    return sorted(findings, key=lambda f: SEVERITY[f["severity"]])


def tensor_row_keys(tensors: tuple) -> np.ndarray:
    """A hash of each row across encoded input tensors (equal raw rows encode equally)."""
    parts = [np.ascontiguousarray(t.reshape(len(t), -1).numpy()) for t in tensors]
    return np.array([int.from_bytes(hashlib.blake2b(b"".join(p[i].tobytes() for p in parts), digest_size=8).digest(),
                                    "little") for i in range(len(parts[0]))], dtype=np.uint64)


def run_findings(prepared, assessment, classes: list | None) -> list[dict]:
    """The report's audit: rows repeated across the run's own splits (their encoded inputs),
    class balance, and likely label errors among the test rows (the run never trained on them)."""
    if prepared.shard_url is not None:  # streamed: the rows are not held to hash
        splits = []
    else:
        splits = [("train", prepared.train_inputs), ("val", prepared.val_inputs)]
    if splits and assessment is not None and assessment.source is not None and not assessment.source.streamed:
        test_inputs = _encoded(prepared, assessment)
        if test_inputs is not None:
            splits.append(("test", test_inputs))
    splits = [(name, t) for name, t in splits if t is not None and len(t) and len(t[0])]
    findings = []
    if len(splits) > 1:
        keys = np.concatenate([tensor_row_keys(t) for _, t in splits])
        split = np.concatenate([np.full(len(t[0]), name) for name, t in splits])
        ids = np.concatenate([np.arange(len(t[0])) for _, t in splits])  # row numbers within each split
        findings = duplicate_findings(exact_pairs(keys), split, ids, "identical encoded rows")
    if classes:
        counts = np.asarray(prepared.class_counts(), dtype=float)  # streamed runs count them in the shards
        findings += balance(None, pd.Series(counts, index=[str(c) for c in classes][:len(counts)]))
        if assessment is not None and assessment.proba is not None:
            findings += label_suspects(assessment.truth, assessment.proba, assessment.rows, classes)
    for f in findings:
        if f["check"].startswith("likely label errors"):
            f["what"] += " (row numbers within the test split)"
        if f["check"].endswith("across splits"):
            f["what"] += " (row numbers within their split)"
    return sorted(findings, key=lambda f: SEVERITY[f["severity"]])


def _encoded(prepared, assessment):
    from scaletrain.modalities import modality

    try:
        return modality(prepared.kind).encode(prepared.preprocess, assessment.source)[0]
    except Exception:  # noqa: BLE001 - the audit must not undo a finished fit
        return None


def audit_section(findings: list[dict]) -> str:
    """The report's audit section: one line per finding, the worst first, rows named."""
    import html

    if not findings:
        return "<h2 id='audit'>Data audit</h2><p>Nothing found.</p>"
    items = []
    for f in findings:
        named = f.get("columns") or f.get("rows") or []
        extra = f" — {', '.join(map(str, named[:20]))}{' …' if len(named) > 20 else ''}" if named else ""
        items.append(f"<li><b>{html.escape(f['severity'])}</b>: {html.escape(f['what'])}{html.escape(extra)}. "
                     f"<i>{html.escape(f['do'])}</i></li>")
    return "<h2 id='audit'>Data audit</h2><ul>" + "".join(items) + "</ul>"
