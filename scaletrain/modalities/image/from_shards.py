"""Prepared data from image shards: the state from the manifest, training images left to
stream, validation and test images decoded (up to EVAL_PIXELS) for evaluation."""
from __future__ import annotations

import pandas as pd
import torch

from scaletrain.data.from_shards import class_counts, eval_sample
from scaletrain.data.prepared import Prepared, require_rows
from scaletrain.data.preprocess import encode_target, target_state
from scaletrain.data.sources import Source
from scaletrain.data.stats import TargetStats
from scaletrain.modalities.image.preprocess import transform_images
from scaletrain.modalities.image.shards import decode_frame
from scaletrain.tasks.infer import infer_task

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
        Source("image", f"{source.name} (validation)", items=val),
        Source("image", f"{source.name} (test)", items=test_set) if len(test_set) else None,
        summary, notes, shard_url=source.url, train_rows=manifest.rows("train"), train_class_counts=counts)
