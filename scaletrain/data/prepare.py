"""From loaded sources to encoded train/validation tensors, fitted state and the raw test split."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from scaletrain.data.images import ImageSet
from scaletrain.data.preprocess import (encode_target, fit_images, fit_table, fit_target, table_summary,
                                        transform_images, transform_table)
from scaletrain.data.schema import check_target, find_target, infer_schema, infer_task
from scaletrain.data.sources import Source
from scaletrain.data.split import split_indices
from scaletrain.errors import DataError, TargetError


@dataclass
class Prepared:
    """Everything training needs: encoded tensors, fitted state, raw val/test data, notes."""

    kind: str
    task: str
    preprocess: dict
    train_inputs: tuple[torch.Tensor, ...]
    train_y: torch.Tensor
    val_inputs: tuple[torch.Tensor, ...]
    val_y: torch.Tensor
    val_source: Source
    test_source: Source | None
    summary: dict
    notes: list[str] = field(default_factory=list)
    shard_url: str | None = None   # when set, training rows stream from this shard directory
    train_rows: int | None = None  # (train_inputs/train_y are then empty)
    train_class_counts: torch.Tensor | None = None

    @property
    def n_classes(self) -> int:
        return len(self.preprocess["target"].get("classes", []))

    @property
    def n_train(self) -> int:
        return self.train_rows if self.train_rows is not None else len(self.train_y)

    def class_counts(self) -> torch.Tensor | None:
        if self.task == "regression":
            return None
        if self.train_class_counts is not None:
            return self.train_class_counts
        return torch.bincount(self.train_y, minlength=self.n_classes)

    def imbalance(self) -> float:
        counts = self.class_counts()
        return 1.0 if counts is None else float(counts.max() / counts.clamp(min=1).min())


def _is_classification(task: str) -> bool:
    return task != "regression"


def _require_rows(name: str, n_train: int, n_val: int, val_fraction: float) -> None:
    """Refuse data too small to train and validate on, saying how much is needed."""
    if n_train < 2 or n_val < 1:
        needed = max(4, int(np.ceil(1 / val_fraction)) + 2)
        raise DataError(f"'{name}' has too few usable rows to train and validate ({n_train} train, {n_val} validation); "
                        f"give at least about {needed} labelled rows")


def prepare_table(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Return a Prepared table: target found, roles inferred, split, preprocessing fitted on train."""
    frame, notes = source.frame, []
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"'{source.name}' has the column name '{dup}' twice; give every column its own name")
    target = find_target(frame, data_cfg.target, source.name)
    absent = frame[target].isna()
    if absent.all():
        raise TargetError(f"target column '{target}' has no values; pick a column with labels")
    if absent.any():
        notes.append(f"{int(absent.sum())} rows with a missing target were left out")
        frame = frame[~absent].reset_index(drop=True)
    schema = infer_schema(frame, target, data_cfg.task, data_cfg.columns)
    notes += [f"column '{c}' left out: {why}" for c, why in schema.dropped.items()]
    labels = frame[target].to_numpy() if _is_classification(schema.task) else None
    if test is not None:
        if test.kind != "table" or target not in test.frame.columns:
            raise TargetError(f"test data '{test.name}' has no target column '{target}'")
        pool, test_frame = frame, test.frame
    else:
        keep, held = split_indices(len(frame), labels, data_cfg.test_fraction, seed)
        pool, test_frame = frame.iloc[keep], frame.iloc[held]
    pool_labels = pool[target].to_numpy() if labels is not None else None
    tr, va = split_indices(len(pool), pool_labels, data_cfg.val_fraction, seed + 1)
    train, val = pool.iloc[tr], pool.iloc[va]
    _require_rows(source.name, len(train), len(val), data_cfg.val_fraction)
    state = fit_table(train, schema, data_cfg.scale, data_cfg.clip_quantile,
                      data_cfg.missing_indicators, data_cfg.max_onehot)
    state["target"] = fit_target(train[target], schema.task)
    state["target_column"] = target
    summary = {"task": schema.task, **table_summary(frame, state),
               "train_rows": len(train), "val_rows": len(val), "test_rows": len(test_frame)}
    if summary["duplicate_rows"]:
        notes.append(f"{summary['duplicate_rows']} duplicate rows found (kept)")
    return Prepared(
        "table", schema.task, state,
        transform_table(state, train, source.name).tensors(), encode_target(state["target"], train[target]),
        transform_table(state, val, source.name).tensors(), encode_target(state["target"], val[target]),
        Source("table", f"{source.name} (validation)", frame=val),
        Source("table", test.name if test else f"{source.name} (test)", frame=test_frame) if len(test_frame) else None,
        summary, notes)


def _test_images(source: Source, test: Source | None) -> ImageSet | None:
    if test is not None:
        return test.test_images if test.test_images is not None else test.images
    return source.test_images


def prepare_images(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Return Prepared images: split (IDX files keep their own test split), state fitted on train."""
    images = source.images
    if images.labels is None:
        raise DataError(f"'{source.name}' has images but no labels; put them in one subfolder per class")
    task = infer_task(pd.Series(images.labels), data_cfg.task)
    check_target(pd.Series(images.labels), task, "label")
    classification = _is_classification(task)
    test_set = _test_images(source, test)
    if test_set is None:
        keep, held = split_indices(len(images), images.labels if classification else None, data_cfg.test_fraction, seed)
        pool, test_set = images.subset(keep), images.subset(held)
    else:
        pool = images
    tr, va = split_indices(len(pool), pool.labels if classification else None, data_cfg.val_fraction, seed + 1)
    train, val = pool.subset(tr), pool.subset(va)
    _require_rows(source.name, len(train), len(val), data_cfg.val_fraction)
    state = fit_images(train.images)
    state["target"] = fit_target(train.labels, task)
    n_classes = len(state["target"].get("classes", []))
    summary = {"task": task, "images": len(train) + len(val) + len(test_set),
               "size": f"{state['size'][0]}×{state['size'][1]}", "channels": state["channels"],
               "classes": n_classes, "train_images": len(train), "val_images": len(val),
               "test_images": len(test_set)}
    return Prepared(
        "image", task, state,
        (transform_images(train.images),), encode_target(state["target"], train.labels),
        (transform_images(val.images),), encode_target(state["target"], val.labels),
        Source("image", f"{source.name} (validation)", images=val),
        Source("image", f"{source.name} (test)", images=test_set) if len(test_set) else None,
        summary, [])


def prepare(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Return Prepared data for a table, image or shard source."""
    if source.kind == "shards":
        from scaletrain.data.from_shards import prepare_from_shards

        return prepare_from_shards(source, test, data_cfg)
    if test is not None and test.kind != source.kind:
        raise DataError(f"test data '{test.name}' is {test.kind} data but the training data is {source.kind} data")
    return (prepare_images if source.kind == "image" else prepare_table)(source, test, data_cfg, seed)

