"""`scaletrain audit DATA [--target y]`: the data audit on a whole table or image set, with the
splits `train` would cut (same seed) and out-of-fold probabilities from zero-config fits for
the label check. Writes audit.json and audit.html."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.audit import audit_images, audit_section, audit_table
from scaletrain.config import Config
from scaletrain.data.schema import find_target
from scaletrain.data.sources import concat_sources
from scaletrain.data.split import split_indices
from scaletrain.evaluate.report import build_page
from scaletrain.fitting.cv import out_of_fold_proba
from scaletrain.io import write_json, write_text
from scaletrain.modalities import load_source, load_test_source
from scaletrain.tasks import task_of
from scaletrain.tasks.infer import infer_task


def split_of_rows(n: int, labels, test_fraction: float, val_fraction: float, seed: int,
                  n_test: int = 0) -> np.ndarray:
    """'train' / 'val' / 'test' per row, cut as `train` cuts them (prepare_table, prepare_images);
    with `n_test`, the last n_test rows are a separate test file's (`train --test`)."""
    split = np.full(n, "train", dtype=object)
    if n_test:
        keep, held = np.arange(n - n_test), np.arange(n - n_test, n)
        labels = None if labels is None else np.asarray(labels)[:n - n_test]
    else:
        keep, held = split_indices(n, labels, test_fraction, seed)
    split[held] = "test"
    pool_labels = None if labels is None else np.asarray(labels)[keep]
    _, val = split_indices(len(keep), pool_labels, val_fraction, seed + 1)
    split[np.asarray(keep)[val]] = "val"
    return split


def audit_data(data, target: str | None = None, config: Config | None = None, out: str | Path = "audit",
               folds: int = 5, test=None) -> list[dict]:
    """Audit DATA (with `test`: DATA and a separate test file, as `train --test` reads them)."""
    cfg = config or Config()
    source = load_source(data)
    n_test = 0
    if test is not None:
        held = load_test_source(source, test)
        n_test = len(held.frame) if held.frame is not None else len(held.items)
        source = concat_sources([source, held])
    seed = cfg.train.seed
    if source.frame is not None:
        frame = source.frame.reset_index(drop=True)
        target = find_target(frame, target or cfg.data.target, source.name) if (target or cfg.data.target) else target
        classification = target is not None and task_of(infer_task(frame[target], cfg.data.task)).classifies
        labels = frame[target].astype(str).to_numpy() if classification else None
        split = split_of_rows(len(frame), labels, cfg.data.test_fraction, cfg.data.val_fraction, seed, n_test)
        proba = classes = None
        if classification and folds >= 2:
            labelled = frame[frame[target].notna()]
            if len(labelled) == len(frame):
                proba, classes = out_of_fold_proba(source, cfg.with_values({"data.target": target}), folds)
        findings = audit_table(frame, target, split, proba, classes, classification)
    else:
        images = source.items
        labels = images.labels
        split = split_of_rows(len(images), labels, cfg.data.test_fraction, cfg.data.val_fraction, seed, n_test)
        proba, classes = out_of_fold_proba(source, cfg, folds) if labels is not None and folds >= 2 else (None, None)
        findings = audit_images(images.images, labels, split, proba, classes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", {"data": str(data), "rows": len(split),
                                    "splits": pd.Series(split).value_counts().to_dict(), "findings": findings})
    write_text(out / "audit.html", build_page(f"scaletrain audit: {source.name}", audit_section(findings)))
    return findings
