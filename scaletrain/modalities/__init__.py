"""The modality registry: the one place that knows which modalities exist.

Adding a modality is a module that defines a `Modality` subclass and one entry below. Code
elsewhere reads and prepares data, and uses a trained run, through these functions and the
modality they return; none of it asks which modality it has.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.data.manifest import is_shard_dir, read_manifest
from scaletrain.data.prepared import Prepared
from scaletrain.data.sources import Source
from scaletrain.errors import ConfigError, DataError
from scaletrain.modalities.audio import AUDIO
from scaletrain.modalities.base import DataFacts, Modality
from scaletrain.modalities.image import IMAGE
from scaletrain.modalities.sequence import SEQUENCE
from scaletrain.modalities.table import TABLE

# In the order sources are offered to them: the table modality reads whatever no other claims.
MODALITIES: dict[str, Modality] = {m.name: m for m in (IMAGE, AUDIO, SEQUENCE, TABLE)}

__all__ = ["MODALITIES", "DataFacts", "Modality", "modality", "load_source", "prepare", "prepare_shards",
           "read_for_run"]


def modality(name: str) -> Modality:
    """The modality registered under `name` (a Source's, a Prepared's or a run's `kind`)."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise DataError(f"no modality '{name}' (known: {', '.join(MODALITIES)}); was this written by a newer "
                        "scaletrain?") from None


def load_source(data, y=None, *, size: tuple[int, int] | None = None, channels: int | None = None) -> Source:
    """Return a Source for a path, glob, folder, shard directory, DataFrame or numpy array
    (with optional y). Images are brought to `size` and `channels` when given (predicting
    with a trained run), else to what the data suggests."""
    if isinstance(data, Source):
        return data
    if isinstance(data, (pd.DataFrame, np.ndarray)):
        for m in MODALITIES.values():
            source = m.from_array(data, y, size, channels)
            if source is not None:
                return source
    if not isinstance(data, (str, Path)):
        raise DataError(f"cannot read data of type {type(data).__name__}; give a path, DataFrame or numpy array")
    if is_shard_dir(data):  # prepared by `scaletrain prepare`: streamed, not loaded
        kind = read_manifest(str(data)).data["kind"]
        return Source(modality(kind).name, str(data).rstrip("/").rsplit("/", 1)[-1] or "shards", url=str(data))
    path = Path(data)
    for m in MODALITIES.values():
        if m.recognizes(path):
            return m.read(data, size, channels)
    raise DataError(f"no modality reads '{data}'")


def prepare(source: Source, test: Source | None, data_cfg, seed: int, starts: dict[str, str] | None = None) -> Prepared:
    """Return Prepared data: split, preprocessing fitted on training rows, tensors encoded.
    `starts`: columns whose encoders start from earlier runs (model.encoders.<column>.init_from)."""
    m = modality(source.kind)
    if starts and (source.streamed or not m.column_encoders):
        raise ConfigError(f"model.encoders sets the encoder of a table's column ({', '.join(starts)}); "
                          f"'{source.name}' is {'streamed ' if source.streamed else ''}{source.kind} data: "
                          "use model.init_from for the whole model")
    if source.streamed:
        from scaletrain.data.from_shards import verified_manifest  # torch: not for `scaletrain prepare`

        return m.prepare_streamed(source, verified_manifest(source, test), data_cfg)
    if test is not None and test.kind != source.kind:
        raise DataError(f"test data '{test.name}' is {test.kind} data but the training data is {source.kind} data")
    return m.prepare(source, test, data_cfg, seed, **({'starts': starts} if starts else {}))


def load_test_source(source: Source, test) -> Source:
    """Separate test data, read to match the training source (an image size, say)."""
    return modality(source.kind).test_source(source, test, load_source)


def read_for_run(state: dict, data, y=None) -> Source:
    """Input for a trained run, read the way its model was trained (its preprocessing `state`)."""
    m = modality(state["kind"])
    size, channels = m.read_settings(state)
    return m.as_run_input(load_source(data, y, size=size, channels=channels))


def prepare_shards(sources: list[str], out: str, **options) -> dict:
    """Prepare shards and the manifest from table files or one folder of class subfolders of
    images; return the manifest. On any error the half-made directory is removed. Options:
    target, task, roles, shard_size, val_fraction, test_fraction, seed, workers, verbose, backend
    (local, or ray: the files spread over a running Ray cluster), and
    per modality chunk_rows (tables) or image_size and channels (images)."""
    for m in MODALITIES.values():
        if m.shards_from(sources):
            return m.prepare_shards(sources, out, options)
    raise DataError(f"no modality prepares shards from {sources[:3]}")
