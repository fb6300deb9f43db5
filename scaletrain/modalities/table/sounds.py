"""A table's sound columns: each cell a path to a clip (relative to the table's folder), the
clip's encoded bytes (a Parquet binary column) or a `data:audio/...;base64,` URI, decoded to
mono at 16 kHz and brought to the column's one length. The column's encoder
(models/vision.SoundEncoder) computes the log-mel spectrogram inside the model, so the exported
graph takes the waveform. An empty cell or a clip that does not decode is a missing value, as
for image columns: the row gets the column's learned "missing" vector and an indicator.

The media columns of a run's state (`state["images"]`) are its image columns, then its sound
columns; an entry's `kind` says which ("image" where absent: runs written before sounds)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaletrain.data.sounds import DEFAULT_RATE, chosen_length, fit_length, sound_cell
from scaletrain.modalities.table.starts import started_sound

SAMPLE_CLIPS = 256  # clips per column read to choose its length and the bands' statistics


def fit_sounds(frame: pd.DataFrame, columns: list[str], starts: dict[str, str]) -> list[dict]:
    """Each sound column's clip length (the 90th percentile of a sample's, at most 10 s) and
    its log-mel front fitted on that sample (data/log_mel.fit_features), or for a column that
    starts from an earlier sound run (`starts`) that run's rate and front."""
    if not columns:
        return []
    from scaletrain.data.log_mel import fit_features  # torch: a sound column is read by `train`, not `prepare`

    fitted = []
    for name in columns:
        started = started_sound(name, starts[name]) if name in starts else None
        rate, clips = started["rate"] if started else DEFAULT_RATE, []
        for value in frame[name].iloc[:SAMPLE_CLIPS * 4]:
            wave = sound_cell(value, rate)
            if wave is not None:
                clips.append(wave)
            if len(clips) == SAMPLE_CLIPS:
                break
        samples = chosen_length([len(c) for c in clips], rate) if clips else rate
        if started:
            fitted.append({"name": name, "kind": "sound", "samples": samples, **started})
            continue
        waves = np.stack([fit_length(c, samples) for c in clips]) if clips else np.zeros((1, samples), np.float32)
        fitted.append({"name": name, "kind": "sound", **fit_features(waves, DEFAULT_RATE)})
    return fitted


def read_sounds(column: dict, values) -> tuple[np.ndarray, np.ndarray]:
    """A column's clips as float32 (rows, samples), silence where a cell holds none, and the
    (rows,) indicator of those cells."""
    waves = np.zeros((len(values), column["samples"]), dtype=np.float32)
    absent = np.zeros(len(values), dtype=np.float32)
    for i, value in enumerate(values):
        wave = sound_cell(value, column["rate"])
        if wave is None:
            absent[i] = 1.0
        else:
            waves[i] = fit_length(wave, column["samples"])
    return absent, waves


FRONT_KEYS = ("rate", "samples", "n_fft", "hop", "n_mels", "fmin", "fmax")


def sound_encoder_spec(column: dict) -> tuple:
    """The column's entry in the model's spec (ModelSpec.pictures): one channel, the bands'
    statistics, and the front's settings where an image column names its backbone."""
    front = {"sound": {k: column[k] for k in FRONT_KEYS}}
    return 1, tuple(column["mean"]), tuple(column["std"]), front | ({"cnn": column["backbone"]} if column.get("backbone") else {})
