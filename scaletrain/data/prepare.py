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


EVAL_ROWS = 250_000  # validation/test rows read from shards into memory for evaluation


def prepare_shards(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Return Prepared shards: preprocessing from the manifest's statistics, training rows left
    to stream, validation and test rows (up to EVAL_ROWS each) read for evaluation."""
    from scaletrain.data.manifest import STATS, filesystem, join, read_manifest, verify_shards
    from scaletrain.data.preprocess import table_state, target_state
    from scaletrain.data.schema import Schema
    from scaletrain.data.stats import TableStats, TargetStats
    from safetensors.torch import load as load_safetensors

    if test is not None:
        raise DataError("shard directories carry their own test split; leave out --test")
    manifest = read_manifest(source.url)
    verify_shards(manifest, source.url)
    m = manifest.data
    if m["kind"] == "image":
        return prepare_image_shards(source, manifest, data_cfg)
    roles = dict(m["roles"])
    if data_cfg.target is not None and data_cfg.target != roles["target"]:
        raise TargetError(f"'{source.url}' was prepared with target '{roles['target']}', not '{data_cfg.target}'; "
                          "prepare again with --target")
    if data_cfg.columns:
        raise DataError("data.columns must be given to `scaletrain prepare`; roles are fixed in the shards")
    fs, root = filesystem(source.url)
    with fs.open(join(root, STATS), "rb") as fh:
        sketches = load_safetensors(fh.read())
    stats = TableStats.from_parts(m["stats"], sketches)
    schema = Schema(**roles)
    state = table_state(stats, schema, data_cfg.scale, data_cfg.clip_quantile, data_cfg.missing_indicators,
                        data_cfg.max_onehot)
    state["target"] = target_state(TargetStats.from_plain(m["target"]))
    state["target_column"] = schema.target
    notes = [f"training rows stream from {len(manifest.split_shards('train'))} shard(s) in '{source.url}'"]

    val, test_frame = eval_sample(manifest, source.url, "val", EVAL_ROWS, notes), \
        eval_sample(manifest, source.url, "test", EVAL_ROWS, notes)
    _require_rows(source.name, manifest.rows("train"), len(val), data_cfg.val_fraction)
    target = schema.target
    counts = None
    if _is_classification(schema.task):
        from scaletrain.data.preprocess import label_key

        labels = TargetStats.from_plain(m["target"]).labels
        counts = torch.tensor([labels[label_key(c)] for c in state["target"]["classes"]])
    summary = {"task": schema.task, "rows": sum(m["rows"].values()), "columns": len(m["columns"]),
               "shards": len(manifest.shards), "numeric": schema.numeric, "boolean": schema.boolean,
               "datetime": schema.datetime, "categorical": schema.categorical, "dropped": schema.dropped,
               "train_rows": manifest.rows("train"), "val_rows": manifest.rows("val"), "test_rows": manifest.rows("test")}
    return Prepared(
        "table", schema.task, state, (), torch.empty(0, dtype=torch.long),
        transform_table(state, val, source.name).tensors(), encode_target(state["target"], val[target], source.name),
        Source("table", f"{source.name} (validation)", frame=val),
        Source("table", f"{source.name} (test)", frame=test_frame) if len(test_frame) else None,
        summary, notes, shard_url=source.url, train_rows=manifest.rows("train"), train_class_counts=counts)


def eval_sample(manifest, url: str, split: str, limit: int, notes: list[str]) -> pd.DataFrame:
    """Return the first row groups of a split, up to about `limit` rows, noting any cut."""
    from scaletrain.data.stream import read_units, units_of

    chosen, rows = [], 0
    for unit in units_of(manifest, split):
        if rows >= limit:
            notes.append(f"{split} metrics use the first {rows:,} of {manifest.rows(split):,} {split} rows")
            break
        chosen.append(unit)
        rows += unit.rows
    return read_units(manifest.root, url, chosen)


EVAL_PIXELS = 256 << 20  # decoded validation/test images held in memory from image shards


def prepare_image_shards(source: Source, manifest, data_cfg) -> Prepared:
    """Return Prepared image shards: state from the manifest, val/test images decoded."""
    from scaletrain.data.image_shards import decode_frame
    from scaletrain.data.preprocess import target_state
    from scaletrain.data.stats import TargetStats

    m = manifest.data
    size, channels = m["image"]["size"], m["image"]["channels"]
    target = TargetStats.from_plain(m["target"])
    target.task = infer_task(pd.Series(list(target.examples.values())), data_cfg.task)
    state = {"kind": "image", "size": size, "channels": channels, "mean": m["pixels"]["mean"],
             "std": [s if s > 1e-6 else 1.0 for s in m["pixels"]["std"]], "target": target_state(target)}
    notes = [f"training images stream from {len(manifest.split_shards('train'))} shard(s) in '{source.url}'"]
    limit = max(1, EVAL_PIXELS // (size[0] * size[1] * channels))
    val = decode_frame(eval_sample(manifest, source.url, "val", limit, notes), size, channels)
    test_set = decode_frame(eval_sample(manifest, source.url, "test", limit, notes), size, channels)
    _require_rows(source.name, manifest.rows("train"), len(val), data_cfg.val_fraction)
    from scaletrain.data.preprocess import label_key

    counts = torch.tensor([target.labels[label_key(c)] for c in state["target"]["classes"]])
    summary = {"task": target.task, "images": sum(m["rows"].values()), "size": f"{size[0]}×{size[1]}",
               "channels": channels, "classes": len(counts), "shards": len(manifest.shards),
               "train_images": manifest.rows("train"), "val_images": manifest.rows("val"),
               "test_images": manifest.rows("test")}
    return Prepared(
        "image", target.task, state, (), torch.empty(0, dtype=torch.long),
        (transform_images(val.images),), encode_target(state["target"], val.labels, source.name),
        Source("image", f"{source.name} (validation)", images=val),
        Source("image", f"{source.name} (test)", images=test_set) if len(test_set) else None,
        summary, notes, shard_url=source.url, train_rows=manifest.rows("train"), train_class_counts=counts)


def prepare(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Return Prepared data for a table, image or shard source."""
    if source.kind == "shards":
        return prepare_shards(source, test, data_cfg, seed)
    if test is not None and test.kind != source.kind:
        raise DataError(f"test data '{test.name}' is {test.kind} data but the training data is {source.kind} data")
    return (prepare_images if source.kind == "image" else prepare_table)(source, test, data_cfg, seed)

