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

from scaletrain.data.values import cell_share
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


SOUND_URI = "data:audio/"
SOUND_SHARE = 0.9  # share of a column's non-empty cells that must name or hold a clip for it to be a sound column


def is_sound_bytes(value: bytes) -> bool:
    """Whether bytes start as a WAV, FLAC, Ogg, AIFF or MP3 file does (a WebP is RIFF too)."""
    return (value[:4] == b"RIFF" and value[8:12] == b"WAVE") or value[:4] in (b"fLaC", b"OggS") \
        or (value[:4] == b"FORM" and value[8:12] in (b"AIFF", b"AIFC")) or value[:3] == b"ID3"


def looks_like_sound(value) -> bool:
    """Whether one cell names or holds a sound clip (a path with a sound suffix, bytes, a data URI)."""
    if isinstance(value, bytes):
        return is_sound_bytes(value)
    if not isinstance(value, str):
        return False
    return value.startswith(SOUND_URI) or Path(value.strip()).suffix.lower() in AUDIO_SUFFIXES


def is_sound_column(series) -> bool:
    """Whether a table column holds sound clips: most of its non-empty cells look like one."""
    return cell_share(series, looks_like_sound) >= SOUND_SHARE


def sound_cell(value, rate: int) -> np.ndarray | None:
    """The clip one table cell names or holds, as mono samples at `rate`; None where the cell is
    empty or holds nothing readable (a missing clip, counted by the caller, never an error).
    A clip over MAX_CLIP_SECONDS is none as well: its header is read, no sample decoded."""
    import base64
    import binascii

    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.startswith(SOUND_URI):
            try:
                value = base64.b64decode(text.split(",", 1)[-1], validate=True)
            except (binascii.Error, ValueError):
                return None
        else:
            value = Path(text)
    if not isinstance(value, (bytes, Path)):
        return None
    try:
        return read_clip(value, rate, name="a table cell")
    except (DataError, InputTooLarge, OSError):
        return None


def names_a_sound(value: str) -> bool:
    """Whether a path names a file libsndfile reads (its header only: a cheap check)."""
    import soundfile

    try:
        soundfile.info(value.strip())
        return True
    except (RuntimeError, soundfile.LibsndfileError, OSError, ValueError):
        return False


def is_sound(column: dict) -> bool:
    """Whether a table run's media column (an entry of its state's "images") holds sounds."""
    return column.get("kind") == "sound"
