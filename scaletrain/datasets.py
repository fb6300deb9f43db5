"""Small real datasets that ship with scikit-learn, written to disk as a user would have them."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write_digits_folder(folder: str | Path) -> Path:
    """Write scikit-learn's 1,797 8×8 digit images as PNGs, one subfolder per class."""
    from sklearn.datasets import load_digits

    folder = Path(folder)
    digits = load_digits()
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.png")) == len(digits.images):
        return folder
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        path = folder / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).round().astype(np.uint8), "L").save(path)
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "digits":
        sys.exit("usage: python -m scaletrain.datasets digits FOLDER")
    print(f"digits images in {write_digits_folder(sys.argv[2])}")
