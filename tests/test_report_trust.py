"""The report's trust sections — calibration, the decision, importance, confident mistakes —
render in a real headless browser, and none is blank."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

import scaletrain
from tests.test_explain import planted
from tests.test_text_columns import articles

# every <img> (together: a gallery's tiles) and inline <svg> of a section: drawn at a real size, not one flat
# colour (an <svg>: its marks)
VISIBLE = """
const out = {};
for (const id of arguments[0]) {
  const el = document.getElementById(id);
  if (!el) { out[id] = 'missing'; continue; }
  const img = el.querySelector('img'), svg = el.querySelector('svg');
  if (img) {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < px.length; i += 4 * 97) seen.add(px[i] + ',' + px[i + 1] + ',' + px[i + 2]);
    const drawn = [...el.querySelectorAll('img')].reduce((sum, i) => sum + i.getBoundingClientRect().width, 0);
    out[id] = {width: drawn, colours: seen.size};
  } else if (svg) {
    out[id] = {width: svg.getBoundingClientRect().width, colours: svg.querySelectorAll('rect, polyline, circle, path').length};
  } else { out[id] = 'empty'; }
}
return out;
"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    scaletrain.fit(planted(900), "y", out=root / "table", model="mlp", epochs=10)
    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype(np.uint8)[..., None]
    scaletrain.fit(images, y=digits.target, out=root / "images", model="cnn", epochs=2)
    texts = articles(300)
    flipped = texts.index[::5]  # wrong labels: confident mistakes on the test rows
    texts.loc[flipped, "topic"] = texts.loc[flipped, "topic"].map({"sport": "tech", "tech": "money", "money": "sport"})
    scaletrain.fit(texts, "topic", out=root / "text", model="mlp", epochs=8)
    return root


def test_the_trust_sections_render_in_a_browser(reports, browser):
    for run, ids in (("table", ["reliability", "roc-pr", "importance"]), ("images", ["reliability", "mistakes"])):
        browser.get((reports / run / "report.html").as_uri())
        found = browser.execute_script(VISIBLE, ids)
        for plot_id in ids:
            assert isinstance(found[plot_id], dict), (run, plot_id, found[plot_id])
            assert found[plot_id]["width"] > 200 and found[plot_id]["colours"] > 3, (run, plot_id, found[plot_id])
    browser.get((reports / "text" / "report.html").as_uri())
    words = browser.execute_script("return [...document.querySelectorAll('#mistakes span.w')]"
                                   ".filter(w => w.getBoundingClientRect().width > 0).length")
    assert words > 20  # the mistakes' words, highlighted and laid out


def test_the_report_gives_the_calibration_figures(reports):
    metrics = scaletrain.load(reports / "images").metrics["calibration"]
    page = (reports / "images" / "report.html").read_text()
    assert f"{metrics['test_ece_after']:.4f}" in page and f"{metrics['test_ece_before']:.4f}" in page
    table_page = (reports / "table" / "report.html").read_text()
    assert "threshold" in table_page and "Global importance" in table_page


def test_the_mistakes_are_drawn_from_integrated_gradients_alone(reports, monkeypatch):
    """The report draws IG over its confident mistakes; occlusion (as costly again) is for `explain`."""
    from captum.attr import Occlusion

    from scaletrain.fitting.pipeline import render_report

    def refused(*args, **kwargs):
        raise AssertionError("occlusion computed for a report")

    monkeypatch.setattr(Occlusion, "attribute", refused)
    run = scaletrain.load(reports / "images")
    digits = load_digits()
    assessed = run.assess((digits.images[:300] * 16).clip(0, 255).astype(np.uint8)[..., None], digits.target[:300])
    assert 'id="mistakes"' in render_report(run, "images", assessed)
