"""A table's image columns: each cell a path to an image file (relative to the table's folder),
the image's encoded bytes (a Parquet binary column) or a `data:image/...;base64,` URI, read into
uint8 pixels for the column's own encoder (models/vision.PictureEncoder). An empty cell or a file
that does not decode is a missing value, not an error: its row gets the column's learned
"missing" vector and an indicator, and the notes and input warnings count such cells."""
from __future__ import annotations

import base64
import binascii
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.data.pixels import (
    DATA_URI,
    ImageTooLarge,
    choose_channels,
    choose_size,
    decode_image,
    is_image_column,
    looks_like_image,
    to_array,
)
from scaletrain.data.sounds import SOUND_URI, is_sound, is_sound_bytes, is_sound_column, looks_like_sound
from scaletrain.modalities.table.sounds import read_sounds, sound_encoder_spec
from scaletrain.modalities.table.starts import started_state

MEDIA_SIDE = 64        # largest side an image column is brought to unless data.image_size says
SAMPLE_IMAGES = 256    # images per column read to choose its size, channels and normalization
MAX_CELL_BYTES = 32 << 20  # an image file `prepare` carries into a shard: larger ones count as no image


def resolve_image_paths(frame: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The frame with the relative paths of its image and sound cells made absolute from the table's
    folder, so that the rows mean the same files wherever the run later reads them. In a column
    of images every path is; elsewhere (a few rows to predict, some of them empty or wrong) a
    cell with an image's suffix is where that file exists, and text is left as it is."""
    for column in frame.columns:
        series = frame[column]
        if not (series.dtype == object or pd.api.types.is_string_dtype(series)):
            continue
        if is_image_column(series) or is_sound_column(series):
            frame[column] = series.map(lambda v: _absolute(v, folder, must_exist=False))
        elif series.map(lambda v: looks_like_image(v) or looks_like_sound(v)).any():
            frame[column] = series.map(lambda v: _absolute(v, folder, must_exist=True)
                                       if looks_like_image(v) or looks_like_sound(v) else v)
    return frame


def _absolute(value, folder: Path, must_exist: bool):
    if isinstance(value, str) and value.strip() and not value.startswith((DATA_URI, SOUND_URI)) \
            and not Path(value).is_absolute():
        path = folder / value.strip()
        return str(path) if not must_exist or path.is_file() else value
    return value


def decode_cell(value):
    """The image one cell holds, or None where it is empty or does not decode (ImageTooLarge
    where its header declares too many pixels). Cells a client sends to the server are refused
    there unless they hold the image itself (serve/limits.check_client_image): a path would read
    the server's own files."""
    if isinstance(value, bytes):
        return decode_image(value)
    if not isinstance(value, str) or not value.strip():
        return None
    if value.startswith(DATA_URI):
        try:
            return decode_image(base64.b64decode(value.split(",", 1)[-1], validate=True))
        except (binascii.Error, ValueError):
            return None
    return decode_image(Path(value.strip()))


def fit_media(frame: pd.DataFrame, columns: list[str], side: int | None, starts: dict[str, str]) -> list[dict]:
    """Each image column's size, channels and per-channel mean and spread, from a sample of its
    training cells (`side`: data.image_size, else the common size up to MEDIA_SIDE); a column
    whose encoder starts from an earlier image run (`starts`, model.encoders) takes that run's."""
    fitted = []
    for name in columns:
        if name in starts:
            fitted.append({"name": name, **started_state(name, starts[name])})
            continue
        sample = []
        for value in frame[name].iloc[:SAMPLE_IMAGES * 4]:
            image = _decoded_or_none(value)
            if image is not None:
                sample.append(image)
            if len(sample) == SAMPLE_IMAGES:
                break
        if not sample:
            fitted.append({"name": name, "size": [side or 32] * 2, "channels": 1, "mean": [0.5], "std": [0.25]})
            continue
        h, w = (side, side) if side else choose_size([(im.height, im.width) for im in sample])
        size = [min(h, MEDIA_SIDE), min(w, MEDIA_SIDE)]
        channels = choose_channels(sample)
        pixels = np.stack([to_array(im, tuple(size), channels) for im in sample]).astype(np.float64) / 255
        fitted.append({"name": name, "size": size, "channels": channels,
                       "mean": [float(v) for v in pixels.mean(axis=(0, 1, 2))],
                       "std": [float(max(v, 1e-3)) for v in pixels.std(axis=(0, 1, 2))]})
    return fitted


def cell_bytes(value, fs, folder: str, sound: bool = False) -> bytes | None:
    """The encoded image (or with `sound`, clip) a cell names or holds, for a shard (`scaletrain
    prepare`): a path read (relative to the table's `folder` on filesystem `fs`), a data URI's
    bytes, the bytes themselves; None where the cell is empty or holds no image's (clip's) bytes.
    Nothing is decoded: a shard carries the file as it was, and training decodes it a batch at a time."""
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.startswith((DATA_URI, SOUND_URI)):
            try:
                value = base64.b64decode(text.split(",", 1)[-1], validate=True)
            except (binascii.Error, ValueError):
                return None
        else:
            path = text if Path(text).is_absolute() or "://" in text else f"{folder.rstrip('/')}/{text}"
            try:
                with fs.open(path, "rb") as handle:
                    value = handle.read(MAX_CELL_BYTES + 1)
            except (OSError, ValueError):
                return None
    if isinstance(value, bytes) and len(value) > MAX_CELL_BYTES:
        return None  # read no further: a shard row holds an image or a clip, not whatever file a cell names
    return value if isinstance(value, bytes) and (is_sound_bytes(value) if sound else looks_like_image(value)) else None


def _decoded_or_none(value):
    try:
        return decode_cell(value)
    except ImageTooLarge:
        return None


def read_media(columns: list[dict], frame: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each row's images as uint8 (rows, channels, height, width) per image column and clips as
    float32 (rows, samples) per sound column, zeros where a cell is empty or unreadable, and the
    (rows, columns) indicator of those cells."""
    absent = np.zeros((len(frame), len(columns)), dtype=np.float32)
    pixels = []
    for j, column in enumerate(columns):
        values = frame[column["name"]].to_numpy() if column["name"] in frame.columns else [None] * len(frame)
        if is_sound(column):
            absent[:, j], waves = read_sounds(column, values)
            pixels.append(waves)
            continue
        size, channels = tuple(column["size"]), column["channels"]
        out = np.zeros((len(frame), channels, *size), dtype=np.uint8)
        for i, value in enumerate(values):
            image = _decoded_or_none(value)
            if image is None:
                absent[i, j] = 1.0
            else:
                out[i] = to_array(image, size, channels).transpose(2, 0, 1)
        pixels.append(out)
    return absent, pixels


def media_counts(columns: list[dict], frame: pd.DataFrame, absent: np.ndarray) -> dict[str, dict]:
    """Per image column: empty cells and cells that name or hold no readable image."""
    counts = {}
    for j, column in enumerate(columns):
        values = frame[column["name"]] if column["name"] in frame.columns else pd.Series([None] * len(frame))
        empty = int(values.map(lambda v: v is None or (isinstance(v, float) and np.isnan(v))
                               or (isinstance(v, str) and not v.strip())).sum())
        counts[column["name"]] = {"empty": empty, "unreadable": int(absent[:, j].sum()) - empty}
    return counts


def encoder_spec(column: dict) -> tuple:
    """A media column's entry in the model's spec (ModelSpec.pictures): (channels, mean, std
    [, backbone]) for an image column, the front's settings in the backbone's place for sounds."""
    if is_sound(column):
        return sound_encoder_spec(column)
    return (column["channels"], tuple(column["mean"]), tuple(column["std"])) + \
        ((column["backbone"],) if column.get("backbone") else ())


def media_example(column: dict):
    """A media column's input to the exported graph, two rows of it: pixels or samples."""
    import torch

    if is_sound(column):
        return torch.zeros((2, column["samples"]))
    return torch.zeros((2, *column["size"], column["channels"]), dtype=torch.uint8)


def media_input(column: dict) -> dict:
    """How the model card describes a media column's graph input."""
    if is_sound(column):
        seconds = column["samples"] / column["rate"]
        return {"name": column["name"], "type": "float32", "shape": ["batch", column["samples"]],
                "what": f"the clip's samples, mono at {column['rate']:,} Hz, cut or padded with silence to "
                        f"{column['samples']:,} ({seconds:.2f} s)"}
    h, w = column["size"]
    return {"name": column["name"], "type": "uint8", "shape": ["batch", h, w, column["channels"]],
            "what": f"the image's pixels, resized to {h}×{w} ({'RGB' if column['channels'] == 3 else 'gray'})"}
