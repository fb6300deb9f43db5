"""Decoding image files and bytes into uint8 arrays: shared by the image modality and a
table's image columns (modalities never import each other; what they share lives here)."""
from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from scaletrain.data.values import cell_share
from scaletrain.errors import InputTooLarge

MAX_IMAGE_PIXELS = 100_000_000  # decoded as RGB: 300 MB; a file declaring more is refused before decoding
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
IMAGE_SHARE = 0.9  # share of a column's non-empty cells that must look like images for it to be an image column
DATA_URI = "data:image/"
# the first bytes of the encodings Pillow reads most: a binary cell that starts so is an image
MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*", b"P5", b"P6")


def looks_like_image(value) -> bool:
    """Whether one cell names or holds an image (a path with an image suffix, bytes, a data URI)."""
    if isinstance(value, bytes):
        return value.startswith(MAGIC) and not (value[:4] == b"RIFF" and value[8:12] != b"WEBP")  # a WAV is RIFF too
    if not isinstance(value, str):
        return False
    return value.startswith(DATA_URI) or Path(value.strip()).suffix.lower() in IMAGE_SUFFIXES


def is_image_column(series: pd.Series) -> bool:
    """Whether a column holds images: most of its non-empty cells look like one."""
    return cell_share(series, looks_like_image) >= IMAGE_SHARE


def names_an_image(value: str) -> bool:
    """Whether a path names a file whose header is an image's (nothing decoded: a cheap check)."""
    try:
        with Image.open(Path(value.strip())):
            return True
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False


def choose_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """Return the common (height, width) if all agree, else a square of the median side, ≤ 64."""
    common, count = Counter(sizes).most_common(1)[0]
    if count == len(sizes):
        return common
    side = int(np.median([min(s) for s in sizes]))
    return (min(side, 64), min(side, 64))


def choose_channels(images: list[Image.Image]) -> int:
    """Return 3 if any image has colour, else 1."""
    return 3 if any(im.mode not in ("L", "1", "I", "I;16", "F", "LA") for im in images) else 1


def to_array(img: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    """Return one image as uint8 (height, width, channels) at the given size."""
    img = img.convert("L" if channels == 1 else "RGB")
    if (img.height, img.width) != tuple(size):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img).reshape(size[0], size[1], channels)


class ImageTooLarge(InputTooLarge):
    """An image whose header declares more pixels than the limit: refused before decoding."""


def decode_image(data: bytes | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image | None:
    """Return the image in `data` (encoded bytes or a file), or None if it is not a readable
    image; ImageTooLarge if its header declares more than `max_pixels` (checked before decoding:
    a small file can declare a huge image)."""
    import io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit says it in words
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
                if img.width * img.height > max_pixels:
                    raise ImageTooLarge(_too_large(img.width * img.height, max_pixels, f"{img.width}×{img.height}"))
                img.load()
                return img.copy()
    except ImageTooLarge:
        raise
    except Image.DecompressionBombError as exc:  # past twice Pillow's own limit, refused by Pillow at open
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLarge(_too_large(int(declared.group(1)) if declared else max_pixels + 1, max_pixels, "")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def _too_large(pixels: int, limit: int, shape: str) -> str:
    return (f"{shape + ' = ' if shape else ''}{pixels / 1e6:,.0f} megapixels, over the limit of {limit / 1e6:,.0f} "
            "megapixels; resize it first")
