"""One entry point from whatever the user gives (path, glob, DataFrame, array) to a Source."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.data.images import (ImageSet, check_image_array, check_labels, find_idx, image_subfolders,
                                    is_image_file, read_idx, read_image_files, read_image_folder, read_npz)
from scaletrain.data.manifest import is_shard_dir
from scaletrain.data.tables import frame_from_arrays, read_table
from scaletrain.errors import DataError


@dataclass
class Source:
    """Loaded input: a table, or images (with the test split that IDX files carry)."""

    kind: str  # "table" | "image" | "shards"
    name: str
    frame: pd.DataFrame | None = None
    images: ImageSet | None = None
    test_images: ImageSet | None = None
    url: str | None = None  # a shard directory (local path or fsspec URL)

    def __len__(self) -> int:
        if self.kind == "shards":
            from scaletrain.data.manifest import read_manifest

            return sum(read_manifest(self.url).data["rows"].values())
        return len(self.frame) if self.kind == "table" else len(self.images)


def _resize(images: ImageSet, size: tuple[int, int] | None, channels: int | None) -> ImageSet:
    """Return images brought to the given size and channel count (used for IDX/npz input)."""
    from PIL import Image

    x = images.images
    if channels is not None and x.shape[3] != channels:
        x = x.mean(axis=3, keepdims=True).astype(np.uint8) if channels == 1 else np.repeat(x, channels, axis=3)
    if size is not None and tuple(x.shape[1:3]) != tuple(size):
        mode = "L" if x.shape[3] == 1 else "RGB"
        out = np.empty((len(x), size[0], size[1], x.shape[3]), dtype=np.uint8)
        for i, img in enumerate(x):
            pil = Image.fromarray(img[..., 0] if mode == "L" else img, mode)
            out[i] = np.asarray(pil.resize((size[1], size[0]), Image.BILINEAR)).reshape(out.shape[1:])
        x = out
    return ImageSet(x, images.labels, images.names)


def load_source(data, y=None, *, size: tuple[int, int] | None = None, channels: int | None = None) -> Source:
    """Return a Source for a path, glob, folder, DataFrame or numpy array (with optional y).

    Images are brought to `size` and `channels` when given (predicting with a trained run),
    else to what the data suggests.
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, pd.DataFrame):
        return Source("table", "dataframe", frame=frame_from_arrays(data, y))
    if isinstance(data, np.ndarray):
        if data.ndim >= 3:
            labels = check_labels(None if y is None else np.asarray(y), len(data), "array")
            images = ImageSet(check_image_array(data, "array"), labels, [f"array[{i}]" for i in range(len(data))])
            return Source("image", "array", images=_resize(images, size, channels))
        return Source("table", "array", frame=frame_from_arrays(data, y))
    if not isinstance(data, (str, Path)):
        raise DataError(f"cannot read data of type {type(data).__name__}; give a path, DataFrame or numpy array")
    if is_shard_dir(data):  # prepared by `scaletrain prepare`: streamed, not loaded
        return Source("shards", str(data).rstrip("/").rsplit("/", 1)[-1] or "shards", url=str(data))
    path = Path(data)
    name = path.stem.split(".")[0] if path.is_file() else path.name or "data"
    if path.is_dir():
        idx = find_idx(path)
        if idx:
            train, test = read_idx(idx)
            return Source("image", name, images=_resize(train, size, channels),
                          test_images=None if test is None else _resize(test, size, channels))
        if image_subfolders(path) or any(is_image_file(p) for p in path.iterdir()):
            return Source("image", name, images=read_image_folder(path, size, channels))
    elif path.suffix.lower() == ".npz":
        return Source("image", name, images=_resize(read_npz(path), size, channels))
    elif is_image_file(path):
        return Source("image", name, images=read_image_files([path], None, size, channels))
    return Source("table", name, frame=read_table(data))

