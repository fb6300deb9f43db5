"""Loaded input, as every modality hands it on: a table, images, or a shard directory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd


class Items(Protocol):
    """Loaded items that are not table rows (a modality's own set: images, clips): what the
    shared code does with them, whatever they are."""

    labels: np.ndarray | None  # one per item, or None (unlabelled input)

    def __len__(self) -> int: ...

    def subset(self, index: np.ndarray) -> "Items": ...

    def concat(self, others: list["Items"]) -> "Items": ...  # self first, then the others, in order

    def batch_key(self) -> tuple: ...  # equal keys concatenate (images of one shape)


@dataclass
class Source:
    """Loaded input: a table, or images (with the test split that IDX files carry), or a shard
    directory to stream from (`url`), of the modality named by `kind`."""

    kind: str  # the modality's name
    name: str
    frame: pd.DataFrame | None = None
    items: Items | None = None        # a modality's items (images, clips) where there is no frame
    test_items: Items | None = None   # the test split a format carries (IDX folders)
    url: str | None = None  # a shard directory (local path or fsspec URL)

    @property
    def streamed(self) -> bool:
        return self.url is not None

    def __len__(self) -> int:
        if self.streamed:
            from scaletrain.data.manifest import read_manifest

            return sum(read_manifest(self.url).data["rows"].values())
        return len(self.frame) if self.frame is not None else len(self.items)


def concat_sources(sources: list[Source]) -> Source:
    """One in-memory source holding the rows (or images) of several, in order."""
    first = sources[0]
    if first.frame is not None:
        frame = pd.concat([s.frame for s in sources], ignore_index=True) if len(sources) > 1 else first.frame
        return Source(first.kind, first.name, frame=frame)
    return Source(first.kind, first.name, items=first.items.concat([s.items for s in sources[1:]]))


def batch_key(source: Source) -> tuple:
    """Sources with equal keys concatenate into one (same columns, or images of one shape)."""
    return ("frame", tuple(source.frame.columns)) if source.frame is not None else ("items", *source.items.batch_key())



def subset_source(source: Source, index: np.ndarray, name: str | None = None) -> Source:
    """The rows (or images) of an in-memory source at `index`, in that order."""
    if source.frame is not None:
        return Source(source.kind, name or source.name, frame=source.frame.iloc[index].reset_index(drop=True))
    return Source(source.kind, name or source.name, items=source.items.subset(np.asarray(index)))


def class_folder_files(folder: Path, subfolders: list[Path], wanted: Callable[[Path], bool]) -> tuple[list[Path], list | None]:
    """The files a folder of items holds: those of its class `subfolders`, labelled by the
    subfolder's name, or (without subfolders) its own, unlabelled; sorted."""
    if not subfolders:
        return sorted(f for f in folder.iterdir() if wanted(f)), None
    paths, labels = [], []
    for sub in subfolders:
        files = sorted(f for f in sub.iterdir() if wanted(f))
        paths += files
        labels += [sub.name] * len(files)
    return paths, labels
