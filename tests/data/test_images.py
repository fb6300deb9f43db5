import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from scaletrain.errors import DataError
from scaletrain.modalities import load_source
from scaletrain.modalities.image import IMAGE


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_folder_with_mixed_sizes_and_modes_is_brought_to_one_shape(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    Image.new("RGB", (20, 30), (255, 0, 0)).save(tmp_path / "cat" / "a.png")
    Image.new("L", (40, 40), 128).save(tmp_path / "cat" / "b.jpg")
    Image.new("P", (16, 16)).save(tmp_path / "dog" / "c.bmp")
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="broken.png"):
        source = load_source(tmp_path)
    images = source.items
    assert source.kind == IMAGE.name and images.images.shape[0] == 3 and images.images.shape[3] == 3
    assert images.images.shape[1] == images.images.shape[2]  # mixed sizes -> one square size
    assert sorted(set(images.labels)) == ["cat", "dog"]


def test_idx_folder_keeps_its_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (12, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(12) % 3)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (5, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5) % 3)
    source = load_source(tmp_path)
    assert source.items.images.shape == (12, 28, 28, 1) and len(source.test_items) == 5
    assert source.items.labels.tolist() == (np.arange(12) % 3).tolist()


def test_truncated_idx_is_a_clear_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 10, 28, 28) + b"\x00" * 100)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(10))
    with pytest.raises(DataError, match="truncated"):
        load_source(tmp_path)


def test_npz_images_and_labels(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.rand(6, 8, 8).astype(np.float32), y=np.arange(6) % 2)
    source = load_source(tmp_path / "d.npz")
    assert source.items.images.dtype == np.uint8 and source.items.images.shape == (6, 8, 8, 1)
    assert source.items.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(DataError):
        load_source(tmp_path)


def test_a_decompression_bomb_is_skipped_with_a_warning(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        Image.new("L", (8, 8), 200).save(tmp_path / label / "0.png")
    # a GIF whose header declares 65,535 × 65,535 pixels: over twice Pillow's limit
    bomb = b"GIF87a\xff\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02D\x01\x00;"
    (tmp_path / "a" / "1.gif").write_bytes(bomb)
    with pytest.warns(UserWarning, match="1.gif"):
        source = load_source(tmp_path)
    assert len(source.items.images) == 2
