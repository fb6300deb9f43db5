"""The scaling study's report section: measured points and fitted curves on log axes, the
held-out cell's prediction against its measurement, iso-loss contours, the sentences."""
from __future__ import annotations

import html

import numpy as np

from scaletrain.evaluate.report import build_page, figure_html, pyplot, table_html
from scaletrain.fitting.scaling_law import Law


def scale_section(study: dict, sentences: list[str]) -> str:
    law, points, held = Law(**study["law"]), study["points"], study["held_out"]
    before = Law(**held["law_without_it"])
    widths, unit = sorted({p["width"] for p in points}), study.get("unit", "rows")
    plt = pyplot()  # contours on log axes: drawn by matplotlib (a study is minutes; its figure is not the cost)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(widths)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for width, colour in zip(widths, colours):
        mine = sorted((p for p in points if p["width"] == width), key=lambda p: p["rows"])
        rows = np.geomspace(mine[0]["rows"], mine[-1]["rows"] * 4, 50)
        left.scatter([p["rows"] for p in mine], [p["loss"] for p in mine], color=colour, s=22,
                     label=f"width {width} ({mine[0]['parameters']:,} parameters)")
        left.plot(rows, law.loss(mine[0]["parameters"], rows), color=colour, lw=1)
    left.scatter([held["rows"]], [held["predicted"]], marker="x", color="red", s=70, zorder=4,
                 label=f"held-out cell, predicted ({100 * held['error']:+.1f}%)")
    left.set_xscale("log"), left.set_yscale("log"), left.set_xlabel(f"training {unit} (D)"), left.set_ylabel("holdout loss")
    left.legend(fontsize=7), left.grid(alpha=.3, which="both")
    n = np.geomspace(min(p["parameters"] for p in points) / 2, max(p["parameters"] for p in points) * 8, 80)
    d = np.geomspace(min(p["rows"] for p in points) / 2, max(p["rows"] for p in points) * 8, 80)
    grid_n, grid_d = np.meshgrid(n, d)
    contours = right.contour(grid_n, grid_d, law.loss(grid_n, grid_d), levels=10, cmap="viridis")
    right.clabel(contours, fontsize=7, fmt="%.3g")
    right.scatter([p["parameters"] for p in points], [p["rows"] for p in points], c="k", s=10, label="measured cells")
    right.scatter([held["parameters"]], [held["rows"]], marker="x", color="red", s=70, label="held-out cell")
    right.set_xscale("log"), right.set_yscale("log"), right.set_xlabel("parameters (N)"), right.set_ylabel(f"{unit} (D)")
    right.set_title("iso-loss contours of the fitted law", fontsize=9), right.legend(fontsize=7)
    check = (f"fitted on the other cells: predicted {held['predicted']:.4f}, measured {held['measured']:.4f}; "
             f"law without it: E={before.E:.3g}, α={before.alpha:.3f}, β={before.beta:.3f}")
    body = "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>"
    rows = [{k: p[k] for k in ("width", "parameters", "rows", "loss", "loss_sd", "seeds")} for p in points]
    return ("<h2 id='scaling'>Scaling study</h2>" + body + figure_html("scaling-law", "Holdout loss against data and "
            "model size (points: measured; lines: the law; ×: the held-out cell as predicted)", fig)
            + f"<p class='note'>{html.escape(check)}</p>" + table_html(rows))


def scale_page(study: dict, sentences: list[str], name: str) -> str:
    return build_page(f"scaletrain scale: {name}", scale_section(study, sentences))
