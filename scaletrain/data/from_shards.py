"""What every modality's shard directory shares when it is prepared for training: the
verified manifest, the class counts, and validation or test rows read up to a bound."""
from __future__ import annotations

import pandas as pd
import torch

from scaletrain.data.manifest import read_manifest, verify_shards
from scaletrain.data.sources import Source
from scaletrain.data.stats import TargetStats
from scaletrain.data.stream import read_units, units_of
from scaletrain.data.values import label_key
from scaletrain.errors import DataError


def class_counts(target: TargetStats, state: dict) -> torch.Tensor:
    """Return the training rows per class, in the order of the fitted classes."""
    return torch.tensor([target.labels[label_key(c)] for c in state["target"]["classes"]])


def verified_manifest(source: Source, test: Source | None):
    """The manifest of a shard directory whose every shard passed its checksum."""
    if test is not None:
        raise DataError("shard directories carry their own test split; leave out --test")
    manifest = read_manifest(source.url)
    verify_shards(manifest, source.url)
    return manifest


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
