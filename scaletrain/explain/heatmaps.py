"""Heatmaps over a conv net's 2-d input (an image's pixels, a clip's spectrogram): Integrated
Gradients and occlusion (Captum), both measured from a baseline input the explainer chooses
(the training mean), and the figure that lays them over the input.

Integrated Gradients gives each input cell its share of f(x) − f(baseline) (summed over
channels); occlusion paints a square of the baseline over each place in turn and records how
much the explained class's output drops — coarser, but it needs no gradients and a reader
trusts it at once. Each heatmap is one value per cell (height × width); `mass_in` says what
share of its magnitude a region holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scaletrain.explain.gradients import integrated_gradients

STEPS = 64  # IG steps per input: hundreds of cells; completeness within a few %
SHOWN = 24  # inputs drawn on explain.html


@dataclass
class Heatmaps:
    ig: np.ndarray          # (images, height, width)
    occlusion: np.ndarray | None  # (images, height, width); None where only IG was asked for
    target: np.ndarray      # the explained class per image (0 for regression)
    output: np.ndarray      # f(image) for that class
    baseline: np.ndarray    # f(mean image)


def mass_in(heatmap: np.ndarray, rows: slice, cols: slice) -> float:
    """The share of the heatmap's absolute mass inside the region."""
    total = np.abs(heatmap).sum()
    return float(np.abs(heatmap[rows, cols]).sum() / total) if total > 0 else 0.0


def input_heatmaps(model: torch.nn.Module, x: torch.Tensor, mean: torch.Tensor, steps: int = STEPS,
                   batch: int = 16, fixed: tuple = (), occlusion: bool = True) -> Heatmaps:
    """Heatmaps for float NCHW inputs `x` against the baseline `mean` (x's shape), explaining the
    class the model predicts for each. `fixed`: each row's other inputs (a table row's numbers
    and text beside one image column), held as they are: model(x, *fixed). `occlusion`: False
    where only IG is drawn (a report's mistakes): occlusion costs about as much again."""
    from captum.attr import Occlusion

    model = model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + 256], *(f[i:i + 256] for f in fixed)) for i in range(0, len(x), 256)]) \
            if len(x) else torch.zeros((0, 1))
        base = torch.cat([model(mean[i:i + 256], *(f[i:i + 256] for f in fixed)) for i in range(0, len(x), 256)]) \
            if len(x) else out
    target = torch.zeros(len(x), dtype=torch.long) if out.shape[1] == 1 else out.argmax(dim=1)
    ig, occluded = integrated_gradients(model), Occlusion(model)
    channels, height, width = x.shape[1:]
    side = max(2, min(height, width) // 7)
    window, stride = (channels, side, side), (channels, max(1, side // 2), max(1, side // 2))
    ig_maps, occlusion_maps = [], []
    for start in range(0, len(x), batch):
        part = slice(start, start + batch)
        rest = tuple(f[part] for f in fixed) or None
        ig_maps.append(ig.attribute(x[part], baselines=mean[part], target=target[part], n_steps=steps,
                                    additional_forward_args=rest, internal_batch_size=batch * 8).sum(dim=1).detach())
        if occlusion:
            occlusion_maps.append(occluded.attribute(x[part], sliding_window_shapes=window, strides=stride,
                                                     baselines=mean[part], target=target[part],
                                                     additional_forward_args=rest,
                                                     perturbations_per_eval=32).sum(dim=1).detach())
    empty = torch.zeros((0, height, width))
    return Heatmaps(torch.cat(ig_maps).numpy() if ig_maps else empty.numpy(),
                    None if not occlusion else torch.cat(occlusion_maps).numpy() if occlusion_maps else empty.numpy(),
                    target.numpy(),
                    out.gather(1, target[:, None]).squeeze(1).numpy(), base.gather(1, target[:, None]).squeeze(1).numpy())


def overlay_figure(images: np.ndarray, maps: list[np.ndarray], captions: list[str], columns: int = 6,
                   origin: str = "upper"):
    """A matplotlib figure: each image in grey with its heatmap over it (red: towards the
    explained class, blue: against it); origin="lower" puts row 0 at the bottom (spectrograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, heat, caption in zip(axes.ravel(), images, maps, captions):
        grey = image.mean(axis=-1) if image.ndim == 3 else image
        ax.imshow(grey, cmap="gray", origin=origin, aspect="auto")
        top = float(np.abs(heat).max()) or 1.0
        ax.imshow(heat, cmap="bwr", vmin=-top, vmax=top, alpha=0.55, origin=origin, aspect="auto")
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    return fig


def write_heatmap_page(out, title: str, maps: Heatmaps, backdrops: np.ndarray, captions: list[str],
                       method: str, origin: str = "upper", axes: str = "") -> dict:
    """Write heatmaps.safetensors, importance.json and explain.html (each backdrop with its IG
    and occlusion maps over it) into `out`; return the summary. `method` says what was
    explained from what, `axes` what the figures' axes are; the backdrops are drawn in grey
    (images, spectrograms, sequences' steps)."""
    from safetensors.numpy import save_file

    from scaletrain.evaluate.report import figure_html
    from scaletrain.explain.pages import page
    from scaletrain.io import write_json, write_text

    # C order: safetensors writes the array's buffer as it lies, and a transposed view's is not
    save_file({"integrated_gradients": np.ascontiguousarray(maps.ig, np.float32),
               "occlusion": np.ascontiguousarray(maps.occlusion, np.float32)}, str(out / "heatmaps.safetensors"))
    gap = np.abs(maps.ig.sum(axis=(1, 2)) - (maps.output - maps.baseline))
    summary = {"rows": len(maps.ig), "method": method, "completeness_max_abs_error": float(gap.max()) if len(gap) else 0.0}
    write_json(out / "importance.json", summary)
    shown = min(len(backdrops), SHOWN)
    body = "".join(figure_html(f"heatmaps-{name}", f"{label}{axes} (red: towards the predicted class, blue: against)",
                               overlay_figure(backdrops[:shown], list(heat[:shown]), captions[:shown], origin=origin))
                   for name, label, heat in (("ig", "Integrated Gradients", maps.ig), ("occlusion", "Occlusion", maps.occlusion)))
    intro = (f"{len(maps.ig)} inputs; {method}; Integrated Gradients sum to f(input) − f(baseline) within "
             f"{summary['completeness_max_abs_error']:.2g}.")
    write_text(out / "explain.html", page(title, intro, body))
    return summary
