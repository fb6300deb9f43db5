"""Read sound clips: a folder with one subfolder per class, a folder of clips, or one file.

Each clip is decoded to mono at one rate (data/sounds.py) and all are brought to one length:
cropped or padded with silence at the end.

A file that cannot be decoded, holds no samples, or lasts longer than `MAX_CLIP_SECONDS` is
skipped and named (`ClipSet.skipped`; the run's notes say which), or refused when it is the
only one. Length is checked from the header before a sample is decoded: decoding hours of
sound to keep a few seconds would only exhaust memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.data.sounds import AUDIO_SUFFIXES, DEFAULT_RATE, chosen_length, fit_length, read_clip
from scaletrain.data.sources import class_folder_files
from scaletrain.errors import DataError


@dataclass
class ClipSet:
    """Mono clips of one length at one rate, float32 (n, samples), with labels when known."""

    waves: np.ndarray
    labels: np.ndarray | None
    names: list[str]
    rate: int
    skipped: list[str] = field(default_factory=list)  # files that could not be read, with why
    table: pd.DataFrame | None = None  # a listing's other columns, a row per clip (listing.py)

    def __len__(self) -> int:
        return len(self.waves)

    def subset(self, index: np.ndarray) -> "ClipSet":
        labels = None if self.labels is None else self.labels[index]
        table = None if self.table is None else self.table.iloc[index].reset_index(drop=True)
        return ClipSet(self.waves[index], labels, [self.names[i] for i in index], self.rate, table=table)

    def concat(self, others: list["ClipSet"]) -> "ClipSet":
        """These clips, then the others' (their labels dropped: prediction input)."""
        sets = [self, *others]
        return ClipSet(np.concatenate([s.waves for s in sets]), None, [n for s in sets for n in s.names], self.rate)

    def batch_key(self) -> tuple:
        return self.rate, self.waves.shape[1]


def is_audio_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES


def audio_subfolders(folder: Path) -> list[Path]:
    """The class subfolders of `folder` that hold sound files (sorted), or []."""
    if not folder.is_dir():
        return []
    return sorted(s for s in folder.iterdir() if s.is_dir() and any(is_audio_file(f) for f in s.iterdir()))


def read_clip_files(paths: list[Path], labels: list | None, rate: int | None = None,
                    samples: int | None = None, table: pd.DataFrame | None = None) -> ClipSet:
    """Clips from files, at `rate` (default 16 kHz) and `samples` long (default: chosen from
    their lengths), with the rows of `table` that go with them; unreadable files are skipped
    and listed, unless none is left."""
    rate = rate or DEFAULT_RATE
    waves, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            waves.append(read_clip(path, rate))
            kept.append(i)
        except DataError as exc:
            if len(paths) == 1:
                raise
            skipped.append(str(exc))
    if not waves:
        raise DataError(f"none of the {len(paths)} sound files could be read; the first: {skipped[0]}")
    samples = samples or chosen_length([len(w) for w in waves], rate)
    stacked = np.stack([fit_length(w, samples) for w in waves])
    names = [str(paths[i]) for i in kept]
    kept_labels = None if labels is None else np.asarray([labels[i] for i in kept])
    kept_rows = None if table is None else table.iloc[kept].reset_index(drop=True)
    return ClipSet(stacked, kept_labels, names, rate, skipped, kept_rows)


def read_clip_folder(folder: Path, rate: int | None = None, samples: int | None = None) -> ClipSet:
    """A folder's clips; class labels come from subfolder names when there are any."""
    files, labels = class_folder_files(folder, audio_subfolders(folder), is_audio_file)
    if not files:
        raise DataError(f"the folder '{folder}' holds no sound files ({', '.join(sorted(AUDIO_SUFFIXES))}) and no "
                        "class subfolders with them")
    return read_clip_files(files, labels, rate, samples)


def check_waves(x: np.ndarray, where: str) -> np.ndarray:
    """In-memory clips (n, samples) as float32, refused with the reason if they are not."""
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: sound clips are a 2-d array of numbers (clips, samples); got shape {x.shape}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{where}: the clips hold values that are not finite numbers")
    return x
