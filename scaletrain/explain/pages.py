"""The HTML pieces of explain.html (and the report's importance section): inline SVG bars, a page."""
from __future__ import annotations

import html


def bars(values: dict[str, float], title: str, limit: int = 20) -> str:
    """A horizontal bar chart as inline SVG (signed values: red positive, blue negative)."""
    items = list(values.items())[:limit]
    top = max((abs(v) for _, v in items), default=1.0) or 1.0
    rows = "".join(
        f'<text x="0" y="{22 * i + 15}">{html.escape(str(k))[:24]}</text>'
        f'<rect x="170" y="{22 * i + 3}" width="{max(1.0, 300 * abs(v) / top):.1f}" height="15" '
        f'fill="{"#4a7bd0" if v >= 0 else "#d0644a"}"/>'
        f'<text x="{175 + 300 * abs(v) / top:.1f}" y="{22 * i + 15}">{v:.3g}</text>' for i, (k, v) in enumerate(items))
    return (f"<h2>{html.escape(title)}</h2><svg class='chart' width='560' height='{22 * len(items) + 10}' "
            f"font-size='12' font-family='sans-serif'>{rows}</svg>")


def page(title: str, intro: str, body: str) -> str:
    """A self-contained page (no scripts, no network), styled as the report."""
    from scaletrain.evaluate.report import build_page

    return build_page(title, f"<p>{intro}</p>{body}")
