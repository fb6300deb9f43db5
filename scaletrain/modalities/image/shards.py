"""`scaletrain prepare` for image folders (one subfolder per class, local or fsspec): Parquet
shards holding each image's encoded bytes and label, and the statistics preprocessing needs
(size, channels, per-channel mean/std of training pixels, label counts) from one pass.

Images are decoded once here for the statistics and again by the loader workers in training;
keeping the encoded bytes keeps shards small (a PNG is a fraction of its pixels).
"""
from __future__ import annotations

import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa

from scaletrain.data.manifest import SPLITS, filesystem
from scaletrain.data.pixels import IMAGE_SUFFIXES, choose_channels, choose_size, decode_image, to_array
from scaletrain.data.shard_writer import (
    SPLIT_CODES,
    FileResult,
    ShardWriter,
    finish,
    new_shard_directory,
    split_codes,
    split_rule,
)
from scaletrain.data.stats import Moments, TargetStats
from scaletrain.errors import DataError
from scaletrain.parallel.cluster import map_on_ray
from scaletrain.runtime import cores
from scaletrain.tasks import MULTICLASS

IMAGES_PER_JOB = 16_384
ROW_GROUP = 4_096
SAMPLE_IMAGES = 2_000
SCHEMA = pa.schema([pa.field("image", pa.binary()), pa.field("label", pa.string()), pa.field("name", pa.string())])


def list_image_folder(url: str) -> tuple[list[str], list[str]]:
    """Return (files, labels) of a folder with one subfolder of images per class."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    files, labels = [], []
    for path in sorted(fs.find(root)):
        relative = PurePosixPath(path[len(root) + 1:])
        if relative.suffix.lower() in IMAGE_SUFFIXES and len(relative.parts) >= 2 \
                and not any(p.startswith(".") for p in relative.parts):
            files.append(path)
            labels.append(relative.parts[0])
    if not files:
        raise DataError(f"'{url}' holds no images in class subfolders; put each class's images in its own folder")
    return files, labels




@dataclass
class ImageLayout:
    size: tuple[int, int]
    channels: int
    val_fraction: float
    test_fraction: float
    seed: int
    url: str


def image_job(files: list[str], labels: list[str], start: int, layout: ImageLayout, out: str,
              max_bytes: int) -> tuple:
    """Shard one run of images; return (shards, pixel moments per channel, target, rows, bad files)."""
    fs, root = filesystem(out)
    src, _ = filesystem(layout.url)
    writers = {split: ShardWriter(fs, root, split, f"{start:09d}", SCHEMA, max_bytes) for split in SPLITS}
    moments = [Moments() for _ in range(layout.channels)]
    target, counts, bad = TargetStats(MULTICLASS.name), {split: 0 for split in SPLITS}, []
    try:
        for first in range(0, len(files), ROW_GROUP):
            names, tags = files[first:first + ROW_GROUP], labels[first:first + ROW_GROUP]
            blobs, kept, pixels, train_tags = [], [], [], []
            codes = split_codes(0, start + first, len(names), layout)
            for name, tag, code in zip(names, tags, codes):
                data = src.cat_file(name)
                image = decode_image(data)
                if image is None:
                    bad.append(name)
                    continue
                blobs.append(data)
                kept.append((name, tag, code))
                if code == SPLIT_CODES["train"]:
                    pixels.append(to_array(image, layout.size, layout.channels))
                    train_tags.append(tag)
            if pixels:
                flat = np.stack(pixels).reshape(-1, layout.channels).astype(np.float64) / 255.0
                for c in range(layout.channels):
                    moments[c].update(flat[:, c])
                target.update(pd.Series(train_tags))
            for split, code in SPLIT_CODES.items():
                rows = [i for i, (_, _, c) in enumerate(kept) if c == code]
                if rows:
                    writers[split].write(pa.table({"image": [blobs[i] for i in rows],
                                                   "label": [kept[i][1] for i in rows],
                                                   "name": [kept[i][0] for i in rows]}, schema=SCHEMA))
                    counts[split] += len(rows)
    finally:
        for writer in writers.values():
            writer.close()
    return ([s for w in writers.values() for s in w.done], [vars(m) for m in moments], target.to_plain(),
            counts, bad)


def _image_job(args) -> tuple:
    return image_job(*args)


def prepare_image_shards(url: str, out: str, image_size: int | None = None, channels: int | None = None,
                         shard_size: int = 256 << 20, val_fraction: float = 0.15, test_fraction: float = 0.15,
                         seed: int = 0, workers: int | None = None, verbose: bool = True,
                         backend: str = "local") -> dict:
    """Prepare shards and the manifest from a folder with one subfolder of images per class
    (backend "ray": the jobs of images run on a running Ray cluster's workers)."""
    with new_shard_directory(out) as (fs, root):
        return _prepare_images(url, out, fs, root, image_size, channels, shard_size, val_fraction, test_fraction,
                               seed, workers, verbose, backend)


def _prepare_images(url: str, out: str, fs, root: str, size: int | None, channels: int | None,
                    shard_size: int, val_fraction: float, test_fraction: float, seed: int,
                    workers: int | None, verbose: bool, backend: str) -> dict:
    from rich.progress import track

    started = time.perf_counter()
    files, labels = list_image_folder(url)
    src, _ = filesystem(url)
    step = max(1, len(files) // SAMPLE_IMAGES)
    sample = [img for img in (decode_image(src.cat_file(f)) for f in files[::step][:SAMPLE_IMAGES]) if img is not None]
    if not sample:
        raise DataError(f"none of the sampled images in '{url}' could be read (e.g. '{files[0]}')")
    layout = ImageLayout((size, size) if size else choose_size([(im.height, im.width) for im in sample]),
                         channels or choose_channels(sample), val_fraction, test_fraction, seed, url)
    jobs = [(files[i:i + IMAGES_PER_JOB], labels[i:i + IMAGES_PER_JOB], i, layout, out, shard_size)
            for i in range(0, len(files), IMAGES_PER_JOB)]
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) and \
        "file" in (src.protocol if isinstance(src.protocol, tuple) else (src.protocol,))
    workers = workers or cores()
    if backend == "ray":
        outputs = map_on_ray(_image_job, jobs)
    elif local and workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            outputs = list(track(pool.map(_image_job, jobs), total=len(jobs), description="preparing images",
                                 disable=not verbose, transient=True))
    else:
        outputs = [image_job(*job) for job in track(jobs, description="preparing images", disable=not verbose,
                                                     transient=True)]
    moments = [Moments() for _ in range(layout.channels)]
    target = TargetStats(MULTICLASS.name)
    results, bad = [], []
    for shards, job_moments, job_target, rows, job_bad in outputs:
        for total, part in zip(moments, job_moments):
            total.merge(Moments(**part))
        target.merge(TargetStats.from_plain(job_target))
        results.append(FileResult(shards, None, None, rows))
        bad += job_bad
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image file(s), e.g. '{bad[0]}'", stacklevel=2)
    if len(target.labels) < 2:
        raise DataError(f"'{url}' has training images of {len(target.labels)} class(es); give at least two "
                        "class subfolders with images")
    pixels = {"mean": [m.mean for m in moments], "std": [m.std for m in moments]}
    return finish(fs, root, results, {"pixels.count": np.array([m.count for m in moments], dtype=np.int64)}, started, {
        "kind": "image", "sources": [url], "image": {"size": list(layout.size), "channels": layout.channels},
        "split": split_rule(layout), "pixels": pixels, "target": target.to_plain(), "skipped": bad[:100]})


def decode_frame(frame: pd.DataFrame, size: list[int], channels: int):
    """Return a shard frame's images as an ImageSet at the prepared size (all decodable:
    prepare kept only readable images)."""
    from scaletrain.modalities.image.images import ImageSet

    images = np.empty((len(frame), size[0], size[1], channels), dtype=np.uint8)
    for i, data in enumerate(frame["image"]):
        images[i] = to_array(decode_image(data), tuple(size), channels)
    return ImageSet(images, frame["label"].to_numpy(dtype=object), frame["name"].tolist())
