"""Prepared data from a shard directory: preprocessing from the manifest's statistics, the
training rows left to stream, validation and test rows read (up to a bound) for evaluation."""
from __future__ import annotations

import pandas as pd
import torch
from safetensors.torch import load as load_safetensors

from scaletrain.data.image_shards import decode_frame
from scaletrain.data.manifest import STATS, filesystem, join, read_manifest, verify_shards
from scaletrain.data.prepared import Prepared, require_rows
from scaletrain.data.preprocess import encode_target, table_state, target_state, transform_images, transform_table
from scaletrain.data.schema import Schema
from scaletrain.data.sources import Source
from scaletrain.data.stats import TableStats, TargetStats
from scaletrain.data.stream import read_units, units_of
from scaletrain.data.values import label_key
from scaletrain.errors import DataError, TargetError
from scaletrain.tasks import task_of
from scaletrain.tasks.infer import infer_task


def class_counts(target: TargetStats, state: dict) -> torch.Tensor:
    """Return the training rows per class, in the order of the fitted classes."""
    return torch.tensor([target.labels[label_key(c)] for c in state["target"]["classes"]])


EVAL_ROWS = 250_000  # validation/test rows read from shards into memory for evaluation


def verified_manifest(source: Source, test: Source | None):
    """The manifest of a shard directory whose every shard passed its checksum."""
    if test is not None:
        raise DataError("shard directories carry their own test split; leave out --test")
    manifest = read_manifest(source.url)
    verify_shards(manifest, source.url)
    return manifest


def prepare_from_table_shards(source: Source, manifest, data_cfg) -> Prepared:
    """Return Prepared table shards: preprocessing from the manifest's statistics, training rows
    left to stream, validation and test rows (up to EVAL_ROWS each) read for evaluation."""
    m = manifest.data
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
    require_rows(source.name, manifest.rows("train"), len(val), data_cfg.val_fraction)
    target = schema.target
    counts = class_counts(TargetStats.from_plain(m["target"]), state) if task_of(schema.task).classifies else None
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

    chosen, rows = [], 0
    for unit in units_of(manifest, split):
        if rows >= limit:
            notes.append(f"{split} metrics use the first {rows:,} of {manifest.rows(split):,} {split} rows")
            break
        chosen.append(unit)
        rows += unit.rows
    return read_units(manifest.root, url, chosen)


EVAL_PIXELS = 256 << 20  # decoded validation/test images held in memory from image shards


def prepare_from_image_shards(source: Source, manifest, data_cfg) -> Prepared:
    """Return Prepared image shards: state from the manifest, val/test images decoded."""

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
    require_rows(source.name, manifest.rows("train"), len(val), data_cfg.val_fraction)
    counts = class_counts(target, state)
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
