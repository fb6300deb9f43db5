"""`scaletrain audit DATA [--target y]`: the data audit on a whole table or image set, with the
splits `train` would cut (same seed) and out-of-fold probabilities from zero-config fits for
the label check. Writes audit.json and audit.html."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.audit import audit_images, audit_section, audit_table
from scaletrain.config import Config
from scaletrain.cv import out_of_fold_proba
from scaletrain.data.schema import find_target, infer_task
from scaletrain.data.split import split_indices
from scaletrain.evaluate.report import build_page
from scaletrain.io import write_json, write_text
from scaletrain.modalities import load_source


def split_of_rows(n: int, labels, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' per row, cut as `train` cuts them (prepare_table, prepare_images)."""
    split = np.full(n, "train", dtype=object)
    keep, held = split_indices(n, labels, test_fraction, seed)
    split[held] = "test"
    pool_labels = None if labels is None else np.asarray(labels)[keep]
    _, val = split_indices(len(keep), pool_labels, val_fraction, seed + 1)
    split[np.asarray(keep)[val]] = "val"
    return split


def audit_data(data, target: str | None = None, config: Config | None = None, out: str | Path = "audit",
               folds: int = 5) -> list[dict]:
    cfg = config or Config()
    source = load_source(data)
    seed = cfg.train.seed
    if source.frame is not None:
        frame = source.frame.reset_index(drop=True)
        target = find_target(frame, target or cfg.data.target, source.name) if (target or cfg.data.target) else target
        classification = target is not None and infer_task(frame[target], cfg.data.task) != "regression"
        labels = frame[target].astype(str).to_numpy() if classification else None
        split = split_of_rows(len(frame), labels, cfg.data.test_fraction, cfg.data.val_fraction, seed)
        proba = classes = None
        if classification and folds >= 2:
            labelled = frame[frame[target].notna()]
            if len(labelled) == len(frame):
                proba, classes = out_of_fold_proba(source, cfg.with_values({"data.target": target}), folds)
        findings = audit_table(frame, target, split, proba, classes, classification)
    else:
        images = source.images
        labels = images.labels
        split = split_of_rows(len(images), labels, cfg.data.test_fraction, cfg.data.val_fraction, seed)
        proba, classes = out_of_fold_proba(source, cfg, folds) if labels is not None and folds >= 2 else (None, None)
        findings = audit_images(images.images, labels, split, proba, classes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", {"data": str(data), "rows": len(split),
                                    "splits": pd.Series(split).value_counts().to_dict(), "findings": findings})
    write_text(out / "audit.html", build_page(f"scaletrain audit: {source.name}", audit_section(findings)))
    return findings
