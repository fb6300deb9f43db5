"""Loaded input, as every modality hands it on: a table, images, or a shard directory."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaletrain.data.images import ImageSet


@dataclass
class Source:
    """Loaded input: a table, or images (with the test split that IDX files carry), or a shard
    directory to stream from (`url`), of the modality named by `kind`."""

    kind: str  # the modality's name
    name: str
    frame: pd.DataFrame | None = None
    images: ImageSet | None = None
    test_images: ImageSet | None = None
    url: str | None = None  # a shard directory (local path or fsspec URL)

    @property
    def streamed(self) -> bool:
        return self.url is not None

    def __len__(self) -> int:
        if self.streamed:
            from scaletrain.data.manifest import read_manifest

            return sum(read_manifest(self.url).data["rows"].values())
        return len(self.frame) if self.frame is not None else len(self.images)


def concat_sources(sources: list[Source]) -> Source:
    """One in-memory source holding the rows (or images) of several, in order."""
    first = sources[0]
    if first.frame is not None:
        frame = pd.concat([s.frame for s in sources], ignore_index=True) if len(sources) > 1 else first.frame
        return Source(first.kind, first.name, frame=frame)
    images = ImageSet(np.concatenate([s.images.images for s in sources]),
                      None, [n for s in sources for n in s.images.names])
    return Source(first.kind, first.name, images=images)


def batch_key(source: Source) -> tuple:
    """Sources with equal keys concatenate into one (same columns, or images of one shape)."""
    return ("frame", tuple(source.frame.columns)) if source.frame is not None else ("images", source.images.images.shape[1:])



def subset_source(source: Source, index: np.ndarray, name: str | None = None) -> Source:
    """The rows (or images) of an in-memory source at `index`, in that order."""
    if source.frame is not None:
        return Source(source.kind, name or source.name, frame=source.frame.iloc[index].reset_index(drop=True))
    return Source(source.kind, name or source.name, images=source.images.subset(np.asarray(index)))
