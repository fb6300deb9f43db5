"""report.html holds real charts: well-formed inline SVG of a sensible size that draws the run's
numbers, one per section, with no matplotlib figure for a table's run."""
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

import scaletrain

SVG = "{http://www.w3.org/2000/svg}"


def embedded_charts(html: str) -> dict[str, ET.Element]:
    found = re.findall(r'<figure id="([\w-]+)">(<svg .*?</svg>)', html, flags=re.S)
    return {plot_id: ET.fromstring(svg) for plot_id, svg in found}  # parses: well-formed XML


def assert_real_chart(svg: ET.Element):
    width, height = map(float, svg.get("viewBox").split()[2:])
    assert width > 300 and height > 200
    marks = svg.findall(f".//{SVG}polyline") + svg.findall(f".//{SVG}circle") + svg.findall(f".//{SVG}rect")
    assert len(marks) > 3  # data drawn, not an empty frame
    assert [t.text for t in svg.iter(f"{SVG}text") if t.text]  # axes and labels as text


def polyline_points(line: ET.Element) -> np.ndarray:
    return np.array([[float(v) for v in pair.split(",")] for pair in line.get("points").split()])


@pytest.fixture
def no_pyplot(monkeypatch):
    """A run whose report is charts alone must not draw (or import) a matplotlib figure."""
    from scaletrain.evaluate import report

    def refused():
        raise AssertionError("a matplotlib figure drawn for a chart")

    monkeypatch.setattr(report, "pyplot", refused)


def test_classification_report_has_curves_confusion_matrix_and_per_class_table(tmp_path, no_pyplot):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    scaletrain.fit(x[:600], y=y[:600], out=tmp_path / "run", model="mlp", epochs=5, sets=["train.early_stopping=0"])
    html = (tmp_path / "run" / "report.html").read_text()
    charts = embedded_charts(html)
    assert set(charts) == {"learning-curves", "confusion-matrix", "reliability"}
    for svg in charts.values():
        assert_real_chart(svg)
    train_loss = charts["learning-curves"].findall(f".//{SVG}polyline")[0]
    assert len(polyline_points(train_loss)) == 5  # one point an epoch
    cells = [r for r in charts["confusion-matrix"].iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(cells) == 100  # 10 classes × 10
    held_out = sum(int(re.search(r": (\d+)$", c.find(f"{SVG}title").text).group(1)) for c in cells)
    assert held_out == scaletrain.load(tmp_path / "run").metrics["data"]["test_rows"]
    assert "Per-class metrics" in html and html.count("<tr>") > 10
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "https://" not in html


def test_regression_report_has_residual_plot(tmp_path, no_pyplot):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300)}).assign(y=lambda f: 3 * f.x + rng.normal(size=300))
    scaletrain.fit(frame, "y", out=tmp_path / "run", epochs=5)
    charts = embedded_charts((tmp_path / "run" / "report.html").read_text())
    assert set(charts) == {"learning-curves", "residuals"}
    assert_real_chart(charts["residuals"])
    test_rows = scaletrain.load(tmp_path / "run").metrics["data"]["test_rows"]
    assert len(charts["residuals"].findall(f".//{SVG}circle")) == 2 * test_rows  # each test row, on both panels
