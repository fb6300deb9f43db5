"""What a careless user hands over gets a clear answer: infinities in a number column are said,
a UTF-16 CSV is read, a target with a class per row is refused for what it is, an image too
large to decode is called too large (not unreadable), warnings are one line, and the audit
checks a separate test file against the training data."""
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.data.pixels import ImageTooLarge, decode_image
from scaletrain.errors import TargetError
from scaletrain.modalities.image.images import read_image_files
from scaletrain.modalities.table.tables import read_table
from tests import warm_cli

ROOT = Path(__file__).resolve().parent.parent


def table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["y"] = np.where(frame.a > 0, "hi", "lo")
    return frame


def test_infinities_in_a_number_column_are_said_in_training_and_predict(tmp_path):
    frame = table().astype({"a": object})
    frame.loc[:9, "a"] = "Infinity"
    frame.loc[10:14, "a"] = "1e999"
    frame.to_csv(tmp_path / "t.csv", index=False)
    run = scaletrain.fit(tmp_path / "t.csv", "y", out=None, model="linear", epochs=2)
    assert any("column 'a': 15 infinite value(s)" in n for n in run.metrics["notes"])
    new = table(20, seed=1).astype({"a": object})
    new.loc[:2, "a"] = "inf"
    warned = run.predict(new).attrs["warnings"]
    assert any("column 'a': 3 of 20 rows infinite" in w for w in warned)


def test_a_utf16_csv_is_read(tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes(table(10).to_csv(index=False).encode("utf-16"))
    frame = read_table(path)
    assert list(frame.columns) == ["a", "b", "y"] and len(frame) == 10


def test_a_class_per_row_is_refused_as_too_few_rows_per_class(tmp_path):
    frame = pd.DataFrame({"x": np.arange(3000.0), "label": [f"id{i}" for i in range(3000)]})
    with pytest.raises(TargetError, match="too few rows per class: 3,000 classes in 3,000 rows"):
        scaletrain.fit(frame, "label", out=None, epochs=1)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (8-bit grey) and whose data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_an_image_too_large_to_decode_is_called_that(tmp_path):
    with pytest.raises(ImageTooLarge, match="400 megapixels, over the limit of 100"):
        decode_image(png_header_only(20000, 20000))
    with pytest.raises(ImageTooLarge, match="12000×10000 = 120 megapixels"):  # under Pillow's own bomb limit
        decode_image(png_header_only(12000, 10000))
    (tmp_path / "huge.png").write_bytes(png_header_only(20000, 20000))
    (tmp_path / "fine.png").write_bytes(png_header_only(1, 1))
    from PIL import Image

    Image.new("L", (4, 4), 9).save(tmp_path / "fine.png")
    with pytest.warns(UserWarning, match="too large to decode, e.g. '.*huge.png' \\(400 megapixels"):
        images = read_image_files([tmp_path / "huge.png", tmp_path / "fine.png"], None, (4, 4), 1)
    assert len(images) == 1


def test_warnings_are_one_line_on_the_command_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((8, 8), 10 * i + (100 if label == "a" else 0), np.uint8)).save(folder / label / f"{i}.png")
    (folder / "a" / "broken.png").write_bytes(b"not a png")
    done = warm_cli.run("train", folder, "--out", tmp_path / "run", "--quiet", "--set", "model.name=linear",
                        "--set", "train.epochs=1", cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    warned = [line for line in done.stderr.splitlines() if "unreadable" in line]
    assert warned and all(line.startswith("warning: skipped 1 unreadable") for line in warned)
    assert "UserWarning" not in done.stderr and "warnings.warn" not in done.stderr


def test_the_audit_takes_a_separate_test_file(tmp_path):
    train, test = table(300), table(60, seed=7)
    test.iloc[:5] = train.iloc[:5].to_numpy()  # five training rows copied into the test file
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    done = CliRunner().invoke(app, ["audit", str(tmp_path / "train.csv"), "--target", "y", "--test",
                                     str(tmp_path / "test.csv"), "--folds", "0", "--out", str(tmp_path / "audit")])
    assert done.exit_code == 0, done.output[-2000:]
    import json

    findings = json.loads((tmp_path / "audit" / "audit.json").read_text())["findings"]
    across = [f for f in findings if "test" in f["what"] and "train" in f["what"] and "duplicate" in f["what"].lower()]
    assert across, [f["what"] for f in findings]
