"""report.html holds real plots: decodable PNGs of a sensible size, one per section."""
import base64
import io
import re

import numpy as np
import pandas as pd
from PIL import Image

import scaletrain


def embedded_plots(html: str) -> dict[str, Image.Image]:
    found = re.findall(r'<figure id="([\w-]+)"><img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return {plot_id: Image.open(io.BytesIO(base64.b64decode(data))) for plot_id, data in found}


def assert_real_plot(image: Image.Image):
    assert image.width > 300 and image.height > 200
    pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5  # not a blank canvas


def test_classification_report_has_curves_confusion_matrix_and_per_class_table(tmp_path):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    scaletrain.fit(x[:600], y=y[:600], out=tmp_path / "run", epochs=5)
    html = (tmp_path / "run" / "report.html").read_text()
    plots = embedded_plots(html)
    assert set(plots) == {"learning-curves", "confusion-matrix", "reliability"}
    for image in plots.values():
        assert_real_plot(image)
    assert "Per-class metrics" in html and html.count("<tr>") > 10
    assert "http://" not in html and "https://" not in html  # self-contained


def test_regression_report_has_residual_plot(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300)}).assign(y=lambda f: 3 * f.x + rng.normal(size=300))
    scaletrain.fit(frame, "y", out=tmp_path / "run", epochs=5)
    plots = embedded_plots((tmp_path / "run" / "report.html").read_text())
    assert set(plots) == {"learning-curves", "residuals"}
    assert_real_plot(plots["residuals"])
