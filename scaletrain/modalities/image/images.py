"""Read images: class-per-subfolder folders, MNIST-format IDX files and .npz arrays."""
from __future__ import annotations

import gzip
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scaletrain.data.pixels import IMAGE_SUFFIXES, ImageTooLarge, choose_channels, choose_size, decode_image, to_array
from scaletrain.data.sources import class_folder_files
from scaletrain.errors import DataError

IDX_NAMES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass
class ImageSet:
    """Images as uint8 (n, height, width, channels), with labels when known."""

    images: np.ndarray
    labels: np.ndarray | None
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "ImageSet":
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, [self.names[i] for i in index])

    def concat(self, others: list["ImageSet"]) -> "ImageSet":
        """These images, then the others' (their labels dropped: prediction input)."""
        sets = [self, *others]
        return ImageSet(np.concatenate([s.images for s in sets]), None, [n for s in sets for n in s.names])

    def batch_key(self) -> tuple:
        return tuple(self.images.shape[1:])


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find_idx(folder: Path) -> dict[str, Path] | None:
    """Return the four IDX files of an MNIST-format folder, or None if it is not one."""
    found = {}
    for key, stem in IDX_NAMES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
            if candidate.is_file():
                found[key] = candidate
                break
    if "train_x" in found and "train_y" in found:
        return found
    return None


def image_subfolders(folder: str | Path) -> list[str]:
    """Return the subfolders (one per class) that hold at least one image file, of a local
    folder or an fsspec URL; none if it is no folder."""
    from pathlib import PurePosixPath

    from scaletrain.data.manifest import filesystem

    fs, root = filesystem(str(folder))
    if not fs.isdir(root):
        return []
    subs = sorted(e for e in fs.ls(root, detail=False) if fs.isdir(e) and not PurePosixPath(e).name.startswith("."))
    return [s for s in subs if any(PurePosixPath(f).suffix.lower() in IMAGE_SUFFIXES for f in fs.ls(s, detail=False))]


def read_idx_array(path: Path, ndim: int) -> np.ndarray:
    """Return the `ndim`-D array in one IDX file (the MNIST format: magic, dims, raw uint8)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file '{path}': {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"'{path}' is not an unsigned-byte IDX file (bad magic number)")
    if data[3] != ndim:
        raise DataError(f"IDX file '{path}' has {data[3]} dimensions where {ndim} are expected")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX file '{path}' is truncated inside its header")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    size = len(data) - header
    if size != int(np.prod(dims, dtype=object)):
        raise DataError(f"IDX file '{path}' is damaged: header says {dims}, found {size} bytes of data")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()  # writable, for torch


def read_idx(files: dict[str, Path]) -> tuple[ImageSet, ImageSet | None]:
    """Return (train, test) ImageSets from MNIST-format files; test is None if absent."""
    def pair(xk: str, yk: str) -> ImageSet:
        x, y = read_idx_array(files[xk], 3), read_idx_array(files[yk], 1)
        if len(x) != len(y):
            raise DataError(f"'{files[xk]}' has {len(x)} images but '{files[yk]}' has {len(y)} labels")
        return ImageSet(x[..., None], y.astype(np.int64), [f"{files[xk].name}[{i}]" for i in range(len(x))])

    test = pair("test_x", "test_y") if "test_x" in files and "test_y" in files else None
    return pair("train_x", "train_y"), test


def read_npz(path: Path) -> ImageSet:
    """Return images from an .npz holding x/images (n,h,w[,c]) and optionally y/labels."""
    try:
        with np.load(path, allow_pickle=False) as data:  # no pickle, ever
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy each raise their own types on damage
        raise DataError(f"cannot read '{path}' as .npz ({type(exc).__name__}: {exc}); "
                        "write it with numpy.savez(path, x=images, y=labels)") from None
    x = next((arrays[k] for k in ("x", "images", "X", "x_train") if k in arrays), None)
    if x is None:
        raise DataError(f"'{path}' has no 'x' or 'images' array (found: {sorted(arrays)})")
    y = next((arrays[k] for k in ("y", "labels", "Y", "y_train") if k in arrays), None)
    return ImageSet(check_image_array(x, str(path)), check_labels(y, len(x), str(path)),
                    [f"{path.name}[{i}]" for i in range(len(x))])


def check_image_array(x: np.ndarray, name: str) -> np.ndarray:
    """Return an image array as uint8 (n, h, w, c), or raise DataError saying what is wrong."""
    if x.dtype.kind not in "uifb":
        raise DataError(f"'{name}': images must be numbers; got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"'{name}': images must be (n, h, w) or (n, h, w, c); got {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3, 4):  # channels-first input
        x = x.transpose(0, 2, 3, 1)
    if 0 in x.shape:
        raise DataError(f"'{name}': the image array is empty (shape {x.shape})")
    if x.shape[3] not in (1, 3, 4):
        raise DataError(f"'{name}': images need 1, 3 or 4 channels; got shape {x.shape}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"'{name}': {int((~np.isfinite(x)).sum())} pixel values are NaN or infinite")
    return to_uint8(x[..., :3])  # an alpha channel carries no class information here


def check_labels(y: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    """Return labels as a 1-D array of n, or raise DataError."""
    if y is None:
        return None
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"'{name}': labels must be one per image ({n}); got shape {y.shape}")
    if y.dtype.kind not in "uifbUS":
        raise DataError(f"'{name}': labels must be numbers or strings; got dtype {y.dtype}")
    return y


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Return images as uint8; other dtypes are rescaled from their range to 0..255."""
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float64)
    lo, hi = float(np.min(x)), float(np.max(x))
    return ((x - lo) / max(hi - lo, 1e-12) * 255).round().astype(np.uint8)




def read_image_files(paths: list[Path], labels: list | None, size: tuple[int, int] | None,
                     channels: int | None) -> ImageSet:
    """Return decoded images, converted to one channel count and resized to one size.

    Unreadable files are skipped with a warning that names them: one bad file among
    thousands should not cost a run.
    """
    from rich.progress import track

    loaded, kept_labels, names, bad, large = [], [], [], [], []
    # a progress bar only where decoding takes noticeable time
    for i, path in enumerate(track(paths, description="reading images", transient=True, disable=len(paths) < 2000)):
        try:
            img = decode_image(path)
        except ImageTooLarge as exc:
            large.append(f"'{path}' ({exc})")
            continue
        if img is None:
            bad.append(str(path))
            continue
        loaded.append(img)
        names.append(str(path))
        if labels is not None:
            kept_labels.append(labels[i])
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image file(s), e.g. '{bad[0]}'", stacklevel=2)
    if large:
        warnings.warn(f"skipped {len(large)} image file(s) too large to decode, e.g. {large[0]}", stacklevel=2)
    if not loaded:
        raise DataError(f"none of the {len(paths)} image files could be read (e.g. '{paths[0]}')")
    channels = channels or choose_channels(loaded)
    size = size or choose_size([(im.height, im.width) for im in loaded])
    out = np.empty((len(loaded), size[0], size[1], channels), dtype=np.uint8)
    for i, img in enumerate(loaded):
        out[i] = to_array(img, size, channels)
    return ImageSet(out, np.asarray(kept_labels, dtype=object) if labels is not None else None, names)


def read_image_folder(folder: Path, size: tuple[int, int] | None = None,
                      channels: int | None = None) -> ImageSet:
    """Return a folder's images; class labels come from subfolder names when there are any."""
    files, labels = class_folder_files(folder, [Path(s) for s in image_subfolders(folder)], is_image_file)
    if not files:
        raise DataError(f"the folder '{folder}' holds no images and no class subfolders with images")
    return read_image_files(files, labels, size, channels)


def resize_images(images: ImageSet, size: tuple[int, int] | None, channels: int | None) -> ImageSet:
    """Return images brought to the given size and channel count (used for IDX/npz input)."""
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

