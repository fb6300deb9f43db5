"""Pixels and words: heatmaps whose mass is where the label is decided, words that carry the
topic, and the command that writes them."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.explain.heatmaps import mass_in
from scaletrain.explain.image import image_heatmaps
from scaletrain.explain.text import word_attributions
from tests.test_text_columns import TOPICS, articles

PATCH = (slice(2, 6), slice(9, 13))  # 16 of 256 pixels


def patch_images(n: int, seed: int = 0):
    """Noise everywhere; a 4x4 patch is bright for class 1, dark for class 0."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 16, 16, 1)).astype(np.uint8)
    y = rng.integers(0, 2, n)
    x[:, PATCH[0], PATCH[1], 0] = np.where(y[:, None, None] == 1, 230, 25)
    return x, y


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    x, y = patch_images(1200)
    return scaletrain.fit(x, y=y, out=tmp_path_factory.mktemp("patch") / "run", model="cnn", epochs=12)


def test_the_heatmaps_mass_is_in_the_patch_that_decides(patch_run):
    assert patch_run.metrics["test"]["accuracy"] >= 0.98
    x, _ = patch_images(40, seed=1)
    maps = image_heatmaps(patch_run, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    for heat in (maps.ig, maps.occlusion):
        # the patch is 6% of the image; it holds several times that share of the mass, and the peak
        assert np.mean([mass_in(h, *PATCH) for h in heat]) > 0.35
        peaks = [np.unravel_index(np.abs(h).argmax(), h.shape) for h in heat]
        # chance is 16 of 256 pixels; the CPU's float path moves a few peaks from run to run
        assert np.mean([2 <= r < 6 and 9 <= c < 13 for r, c in peaks]) >= 0.75
    moved = maps.output - maps.baseline
    assert np.all(np.abs(maps.ig.sum(axis=(1, 2)) - moved) <= 0.1 * np.abs(moved) + 0.05)  # IG's completeness


def test_explain_writes_heatmaps_for_an_image_run(patch_run, tmp_path):
    x, y = patch_images(30, seed=2)
    np.savez(tmp_path / "new.npz", x=x, y=y)
    result = CliRunner().invoke(app, ["explain", str(patch_run.path), str(tmp_path / "new.npz"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    maps = load_file(str(tmp_path / "x" / "heatmaps.safetensors"))
    assert maps["integrated_gradients"].shape == maps["occlusion"].shape == (30, 16, 16)
    table = pd.read_csv(tmp_path / "x" / "explanations.csv")
    assert len(table) == 30 and table["ig_peak_row"].between(1, 6).mean() >= 0.75
    assert "data:image/png;base64" in (tmp_path / "x" / "explain.html").read_text()


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    return scaletrain.fit(articles(300), "topic", out=tmp_path_factory.mktemp("words") / "run", model="mlp", epochs=8)


def test_the_words_that_carry_the_topic_are_the_strongest(text_run):
    topic_words = {w for words in TOPICS.values() for w in words}
    found = word_attributions(text_run, articles(20, seed=5))
    strongest = [f.text[s:e] for f in found for s, e, _ in [max(f.spans, key=lambda span: span[2])]]
    assert np.mean([w in topic_words for w in strongest]) >= 0.9
    first = found[0]
    assert all(first.text[s:e] in first.text.split() for s, e, _ in first.spans)  # spans are the words as written


def test_explain_and_predict_name_the_words(text_run, tmp_path):
    articles(30, seed=6).to_csv(tmp_path / "rows.csv", index=False)
    result = CliRunner().invoke(app, ["explain", str(text_run.path), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    words = json.loads((tmp_path / "x" / "words.json").read_text())
    assert len(words) == 30 and "<span class='w'" in (tmp_path / "x" / "explain.html").read_text()
    result = CliRunner().invoke(app, ["predict", str(text_run.path), str(tmp_path / "rows.csv"), "--explain", "1",
                                      "--output", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    reasons = pd.read_csv(tmp_path / "p.csv")["reason_1"]
    topic_words = {w for words in TOPICS.values() for w in words}
    assert reasons.str.split(": ").str[-1].isin(topic_words).mean() >= 0.9


def test_a_heatmap_tile_is_red_where_the_input_pushed_towards_the_class_and_blue_against():
    import base64
    import io
    import re

    from PIL import Image

    from scaletrain.explain.heatmaps import TILE, overlay_html

    image, heat = np.full((8, 6), 0.5), np.zeros((8, 6))
    heat[:4], heat[4:] = 1.0, -1.0  # rows 0-3 towards, rows 4-7 against
    pictures = []
    for origin in ("upper", "lower"):
        page = overlay_html("m", "mistakes", image[None], [heat], ["7 → 1 (0.9)"], origin=origin)
        (data,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
        pictures.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), float))
        assert "7 → 1 (0.9)" in page
    upper, lower = pictures
    assert upper.shape == (TILE, TILE, 3)
    top, bottom = upper[: TILE // 2].mean(axis=(0, 1)), upper[TILE // 2:].mean(axis=(0, 1))
    assert top[0] - top[2] > 100 and bottom[2] - bottom[0] > 100  # red above, blue below
    np.testing.assert_array_equal(lower, upper[::-1])  # origin="lower": row 0 at the bottom
