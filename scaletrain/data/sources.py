"""Loaded input, as every modality hands it on: a table, images, or a shard directory."""
from __future__ import annotations

from dataclasses import dataclass

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
