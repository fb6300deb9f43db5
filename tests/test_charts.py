"""The reports' SVG charts: round ticks inside the range, gaps where values are missing, bounded
size for large data, names escaped, and every value reachable as a tooltip."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from scaletrain.evaluate.charts import MAX_POINTS, Panel, Series, chart, figure_svg, hbar_chart, matrix_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("lo, hi", [(0, 1), (0.0403, 0.0461), (-3.2, 7.9), (1200, 98000), (0.5, 0.5000001)])
def test_ticks_are_round_and_inside_the_range(lo, hi):
    ticks = nice_ticks(lo, hi)
    values = [v for v, _ in ticks]
    assert 2 <= len(ticks) <= 11
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in values)
    steps = np.diff(values)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert min(abs(mantissa - m) for m in (1, 2, 2.5, 5, 10)) < 1e-6
    assert len({text for _, text in ticks}) == len(ticks)  # no two labels print alike


def test_a_missing_value_breaks_the_line():
    svg = ET.fromstring(chart([Panel([Series([1, 2, 3, 4, 5], [1.0, 2.0, np.nan, 3.0, 4.0], "loss")])], "t"))
    lines = svg.findall(f".//{SVG}polyline")
    assert [len(line.get("points").split()) for line in lines] == [2, 2]


def test_a_log_axis_ticks_at_powers_of_ten():
    svg = chart([Panel([Series([1, 2, 3], [3.0, 300.0, 30000.0])], y_log=True)], "t")
    labels = {t.text for t in ET.fromstring(svg).iter(f"{SVG}text")}
    assert {"10", "100", "1000", "10000"} <= labels


def test_a_large_scatter_draws_a_bounded_sample_and_says_so():
    rng = np.random.default_rng(0)
    panel = Panel([Series(rng.normal(size=50_000), rng.normal(size=50_000), kind="points", sizes=8)])
    svg = chart([panel], "residuals")
    assert len(ET.fromstring(svg).findall(f".//{SVG}circle")) == MAX_POINTS
    assert f"{MAX_POINTS:,} of 50,000 points drawn" in figure_svg("r", "Residuals", svg, panel.notes)


def test_a_long_curve_keeps_one_point_a_pixel_step():
    x = np.sort(np.random.default_rng(0).random(20_000))
    svg = ET.fromstring(chart([Panel([Series(x, np.sqrt(x))])], "roc"))
    assert len(svg.find(f".//{SVG}polyline").get("points").split()) < 2_000


def test_names_are_escaped_and_each_cell_names_its_count():
    names = ["<script>alert(1)</script>", "a&b", 'say "hi"']
    counts = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    svg = ET.fromstring(matrix_chart(counts, names, "predicted", "true", "confusion"))
    assert not list(svg.iter("script")) and not list(svg.iter(f"{SVG}script"))
    tips = [r.find(f"{SVG}title").text for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(tips) == 9 and "true a&b, predicted <script>alert(1)</script>: 2" in tips


def test_bars_carry_their_values_and_errors():
    svg = ET.fromstring(hbar_chart(["model", "popularity"], [("NDCG@10", [0.31, 0.12], [0.02, 0.01])], "test"))
    tips = [r.find(f"{SVG}title").text for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert tips == ["model: 0.3100 ± 0.0200", "popularity: 0.1200 ± 0.0100"]
    widths = [float(r.get("width")) for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert widths[0] / widths[1] == pytest.approx(0.31 / 0.12, rel=0.01)
