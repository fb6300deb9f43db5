"""Decoding one sound clip (a file or its bytes) into mono float32 samples at one rate:
shared by the audio modality and a table's sound columns (modalities never import each other).

libsndfile (through soundfile) decodes WAV, FLAC, OGG/Vorbis, AIFF and, in its newer builds,
MP3; every clip is mixed down to mono and resampled by soxr (a well-kept, band-limited
resampler: a hand-written one would alias). Length is checked from the header before a sample
is decoded: decoding hours of sound to keep a few seconds would only exhaust memory.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from scaletrain.errors import DataError, InputTooLarge

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au"}
DEFAULT_RATE = 16_000        # speech's rate (and enough for the timbre of instruments up to 8 kHz)
MAX_CLIP_SECONDS = 600.0     # a longer file is refused: decoding it would cost minutes and gigabytes
LONGEST_KEPT_SECONDS = 10.0  # the clip length chosen from the data is at most this
LENGTH_QUANTILE = 0.9        # clips are cut to the length that 90% of them fit in


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
