"""Pixel attributions for image runs: Integrated Gradients and occlusion (Captum), as heatmaps.

Both start from the training rows' mean colour (per channel, the `mean` the run's state keeps):
the image with nothing in it the model has not seen on average. Integrated Gradients gives
each pixel its share of f(image) − f(mean image) (summed over channels); occlusion paints a
square of the mean colour over each place in turn and records how much the explained class's
output drops — coarser, but it needs no gradients and a reader trusts it at once. Each heatmap
is one value per pixel (height × width); `mass_in` says what share of its magnitude a region holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scaletrain.explain.base import Explainer
from scaletrain.run import Assessment, Run

STEPS = 64  # IG steps per image: images have hundreds of inputs; completeness within a few %


@dataclass
class Heatmaps:
    ig: np.ndarray          # (images, height, width)
    occlusion: np.ndarray   # (images, height, width)
    target: np.ndarray      # the explained class per image (0 for regression)
    output: np.ndarray      # f(image) for that class
    baseline: np.ndarray    # f(mean image)


def mass_in(heatmap: np.ndarray, rows: slice, cols: slice) -> float:
    """The share of the heatmap's absolute mass inside the region."""
    total = np.abs(heatmap).sum()
    return float(np.abs(heatmap[rows, cols]).sum() / total) if total > 0 else 0.0


def _float_images(run: Run, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW pixels as the model's float input in [0, 1] (contiguous: Captum's gradients)."""
    return run.modality.eval_inputs([pixels], run.config.train)[0].float().contiguous()


def image_heatmaps(run: Run, pixels: torch.Tensor, steps: int = STEPS, batch: int = 16) -> Heatmaps:
    """Heatmaps for uint8 NCHW images, explaining the class the model predicts for each."""
    from captum.attr import IntegratedGradients, Occlusion

    model = run.model.eval()
    x = _float_images(run, pixels)
    mean = torch.tensor(run.preprocess["mean"], dtype=x.dtype).view(1, -1, 1, 1).expand_as(x).contiguous()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)]) if len(x) else torch.zeros((0, 1))
        base = model(mean[:1]).expand(len(x), -1) if len(x) else out
    target = torch.zeros(len(x), dtype=torch.long) if out.shape[1] == 1 else out.argmax(dim=1)
    ig, occlusion = IntegratedGradients(model), Occlusion(model)
    channels, height, width = x.shape[1:]
    side = max(2, min(height, width) // 7)
    window, stride = (channels, side, side), (channels, max(1, side // 2), max(1, side // 2))
    ig_maps, occlusion_maps = [], []
    for start in range(0, len(x), batch):
        part = slice(start, start + batch)
        ig_maps.append(ig.attribute(x[part], baselines=mean[part], target=target[part], n_steps=steps,
                                    internal_batch_size=batch * 8).sum(dim=1).detach())
        occlusion_maps.append(occlusion.attribute(x[part], sliding_window_shapes=window, strides=stride,
                                                  baselines=mean[part], target=target[part],
                                                  perturbations_per_eval=32).sum(dim=1).detach())
    empty = torch.zeros((0, height, width))
    return Heatmaps(torch.cat(ig_maps).numpy() if ig_maps else empty.numpy(),
                    torch.cat(occlusion_maps).numpy() if occlusion_maps else empty.numpy(), target.numpy(),
                    out.gather(1, target[:, None]).squeeze(1).numpy(), base.gather(1, target[:, None]).squeeze(1).numpy())


def overlay_figure(images: np.ndarray, maps: list[np.ndarray], captions: list[str], columns: int = 6):
    """A matplotlib figure: each image in grey with its heatmap over it (red: towards the
    explained class, blue: against it)."""
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
        ax.imshow(grey, cmap="gray")
        top = float(np.abs(heat).max()) or 1.0
        ax.imshow(heat, cmap="bwr", vmin=-top, vmax=top, alpha=0.55)
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    return fig


def explain_images(run: Run, data, out, rows: int) -> dict:
    """Write explain.html (each image with its IG and occlusion heatmaps), heatmaps.safetensors
    and explanations.csv (prediction, probability, where each heatmap peaks) into `out`."""
    from safetensors.numpy import save_file

    from scaletrain.evaluate.report import figure_html
    from scaletrain.explain.pages import page
    from scaletrain.io import write_json, write_text
    from scaletrain.modalities.image.preprocess import transform_images

    source = run.source(data)
    images = source.items.subset(np.arange(min(rows, len(source.items))))
    maps = image_heatmaps(run, transform_images(images.images))
    predicted = run.predict(data).iloc[:len(images)].reset_index(drop=True)
    peaks = {}
    for name, heat in (("ig", maps.ig), ("occlusion", maps.occlusion)):
        flat = np.abs(heat).reshape(len(heat), -1).argmax(axis=1)
        peaks[f"{name}_peak_row"], peaks[f"{name}_peak_col"] = np.unravel_index(flat, heat.shape[1:])
    predicted[["image", "prediction"]].assign(**peaks).to_csv(out / "explanations.csv", index=False)
    save_file({"integrated_gradients": maps.ig.astype(np.float32), "occlusion": maps.occlusion.astype(np.float32)},
              str(out / "heatmaps.safetensors"))
    gap = np.abs(maps.ig.sum(axis=(1, 2)) - (maps.output - maps.baseline))
    summary = {"rows": len(images), "method": "Integrated Gradients and occlusion (Captum), from the training mean colour",
               "completeness_max_abs_error": float(gap.max()) if len(gap) else 0.0}
    write_json(out / "importance.json", summary)
    shown = min(len(images), 24)
    captions = [str(p)[:14] for p in predicted["prediction"][:shown]]
    body = "".join(figure_html(f"heatmaps-{name}", f"{title} (red: towards the predicted class, blue: against)",
                               overlay_figure(images.images[:shown], list(heat[:shown]), captions))
                   for name, title, heat in (("ig", "Integrated Gradients", maps.ig),
                                             ("occlusion", "Occlusion", maps.occlusion)))
    intro = (f"{len(images)} images; {summary['method']}; Integrated Gradients sum to f(image) − f(mean image) "
             f"within {summary['completeness_max_abs_error']:.2g}.")
    write_text(out / "explain.html", page(f"Why {run.path.name} predicts what it does", intro, body))
    summary["headline"] = f"heatmaps of {len(images)} images"
    return summary


class ImageExplainer(Explainer):
    def explain(self, run: Run, data, out, rows: int) -> dict:
        return explain_images(run, data, out, rows)

    def mistakes_section(self, run: Run, a: Assessment, chosen: np.ndarray, captions: list[str]) -> str:
        from scaletrain.evaluate.report import figure_html
        from scaletrain.modalities.image.preprocess import transform_images

        images = a.source.items.images[a.rows[chosen]]
        maps = image_heatmaps(run, transform_images(images)).ig
        return ("<h2>The most confident mistakes (test)</h2>" + figure_html(
            "mistakes", "true → predicted (probability); Integrated Gradients for the predicted class over each "
                        "(red: towards it, blue: against)", overlay_figure(images, list(maps), captions)))


EXPLAINER = ImageExplainer()  # found by explain/__init__.explainer_for under the modality's name
