"""Read sound clips: a folder with one subfolder per class, a folder of clips, or one file.

libsndfile (through soundfile) decodes WAV, FLAC, OGG/Vorbis, AIFF and, in its newer builds,
MP3; every clip is mixed down to mono and resampled to one rate by soxr (a well-kept,
band-limited resampler: a hand-written one would alias). All clips are brought to one length:
cropped or padded with silence at the end.

A file that cannot be decoded, holds no samples, or lasts longer than `MAX_CLIP_SECONDS` is
skipped and named (`ClipSet.skipped`; the run's notes say which), or refused when it is the
only one. Length is checked from the header before a sample is decoded: decoding hours of
sound to keep a few seconds would only exhaust memory.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.data.sources import class_folder_files
from scaletrain.errors import DataError, InputTooLarge

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au"}
DEFAULT_RATE = 16_000        # speech's rate (and enough for the timbre of instruments up to 8 kHz)
MAX_CLIP_SECONDS = 600.0     # a longer file is refused: decoding it would cost minutes and gigabytes
LONGEST_KEPT_SECONDS = 10.0  # the clip length chosen from the data is at most this
LENGTH_QUANTILE = 0.9        # clips are cut to the length that 90% of them fit in


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


def read_clip(path: Path | bytes, rate: int, name: str | None = None) -> np.ndarray:
    """One file (or its bytes, an upload called `name`) as mono float32 samples at `rate`;
    DataError naming it if it cannot be, InputTooLarge if it is too long to read."""
    import soundfile
    import soxr

    where = name or path
    opened = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    try:
        info = soundfile.info(opened)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise DataError(f"'{where}' is not a sound file libsndfile can read ({_reason(exc)})") from None
    seconds = info.frames / max(info.samplerate, 1)
    if seconds > MAX_CLIP_SECONDS:
        raise InputTooLarge(f"'{where}' lasts {seconds / 60:.0f} minutes; clips of up to {MAX_CLIP_SECONDS / 60:.0f} "
                        "minutes are read: cut long recordings into clips first (e.g. `sox in.wav out.wav trim 0 10 "
                        ": newfile : restart`)")
    if isinstance(opened, io.BytesIO):
        opened.seek(0)
    try:
        samples, found_rate = soundfile.read(opened, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise DataError(f"'{where}' could not be decoded ({_reason(exc)})") from None
    if not samples.size:
        raise DataError(f"'{where}' holds no samples")
    mono = samples.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DataError(f"'{where}' holds samples that are not finite numbers")
    if found_rate != rate:
        mono = soxr.resample(mono, found_rate, rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """The clip cut to `samples`, or padded with silence at the end."""
    if len(wave) >= samples:
        return wave[:samples]
    return np.pad(wave, (0, samples - len(wave)))


def chosen_length(lengths: list[int], rate: int) -> int:
    """The clip length (samples) that most clips fit in: the 90th percentile, at most 10 s."""
    return int(min(np.quantile(np.asarray(lengths), LENGTH_QUANTILE), LONGEST_KEPT_SECONDS * rate))


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
