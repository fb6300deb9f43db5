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
TILE = 112  # pixels a side of each drawn input


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


def overlay_html(plot_id: str, title: str, images: np.ndarray, maps: list[np.ndarray], captions: list[str],
                 origin: str = "upper") -> str:
    """A <figure> of tiles: each image in grey with its heatmap over it (red: towards the
    explained class, blue: against it), its caption beneath; origin="lower" puts row 0 at the
    bottom (spectrograms). Blended in numpy, one small PNG a tile: matplotlib's grid of axes
    took longer than the Integrated Gradients it showed."""
    import html

    tiles = "".join(f'<div class="tile"><img alt="{html.escape(c)}" src="data:image/png;base64,{_tile(i, m, origin)}">'
                    f"<span>{html.escape(c)}</span></div>" for i, m, c in zip(images, maps, captions))
    return (f'<figure id="{plot_id}"><div class="tiles">{tiles}</div>'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _tile(image: np.ndarray, heat: np.ndarray, origin: str, side: int = TILE) -> str:
    """The image in grey (its own range) and the heatmap in blue-white-red (± its largest
    magnitude) blended 45:55, stretched to side × side pixels, as a base64 PNG."""
    import base64
    import io

    from PIL import Image

    grey = np.asarray(image, float)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    low, high = grey.min(initial=0.0), grey.max(initial=0.0)
    grey = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
    share = np.clip(np.asarray(heat, float) / (float(np.abs(heat).max(initial=0.0)) or 1.0), -1, 1)
    colour = np.stack([np.minimum(1, 1 + share), 1 - np.abs(share), np.minimum(1, 1 - share)], axis=-1)
    picture = 0.45 * _stretch(grey, side)[..., None] + 0.55 * _stretch(colour, side)
    if origin == "lower":
        picture = picture[::-1]
    buffer = io.BytesIO()
    Image.fromarray(np.round(picture * 255).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _stretch(array: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour resampling of the first two axes to side × side (cells stay crisp)."""
    rows = (np.arange(side) * array.shape[0] // side).clip(0, array.shape[0] - 1)
    cols = (np.arange(side) * array.shape[1] // side).clip(0, array.shape[1] - 1)
    return array[rows][:, cols]


def write_heatmap_page(out, title: str, maps: Heatmaps, backdrops: np.ndarray, captions: list[str],
                       method: str, origin: str = "upper", axes: str = "") -> dict:
    """Write heatmaps.safetensors, importance.json and explain.html (each backdrop with its IG
    and occlusion maps over it) into `out`; return the summary. `method` says what was
    explained from what, `axes` what the figures' axes are; the backdrops are drawn in grey
    (images, spectrograms, sequences' steps)."""
    from safetensors.numpy import save_file

    from scaletrain.explain.pages import page
    from scaletrain.io import write_json, write_text

    # C order: safetensors writes the array's buffer as it lies, and a transposed view's is not
    save_file({"integrated_gradients": np.ascontiguousarray(maps.ig, np.float32),
               "occlusion": np.ascontiguousarray(maps.occlusion, np.float32)}, str(out / "heatmaps.safetensors"))
    gap = np.abs(maps.ig.sum(axis=(1, 2)) - (maps.output - maps.baseline))
    summary = {"rows": len(maps.ig), "method": method, "completeness_max_abs_error": float(gap.max()) if len(gap) else 0.0}
    write_json(out / "importance.json", summary)
    shown = min(len(backdrops), SHOWN)
    body = "".join(overlay_html(f"heatmaps-{name}", f"{label}{axes} (red: towards the predicted class, blue: against)",
                                backdrops[:shown], list(heat[:shown]), captions[:shown], origin=origin)
                   for name, label, heat in (("ig", "Integrated Gradients", maps.ig), ("occlusion", "Occlusion", maps.occlusion)))
    intro = (f"{len(maps.ig)} inputs; {method}; Integrated Gradients sum to f(input) − f(baseline) within "
             f"{summary['completeness_max_abs_error']:.2g}.")
    write_text(out / "explain.html", page(title, intro, body))
    return summary
