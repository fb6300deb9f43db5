"""Pixel attributions for image runs: Integrated Gradients and occlusion heatmaps
(explain/heatmaps.py) from the training rows' mean colour (per channel, the `mean` the run's
state keeps): the image with nothing in it the model has not seen on average."""
from __future__ import annotations

import numpy as np
import torch

from scaletrain.explain.base import Explainer
from scaletrain.explain.heatmaps import STEPS, Heatmaps, input_heatmaps, overlay_html, write_heatmap_page
from scaletrain.explain.readout import explained_model
from scaletrain.run import Assessment, Run


def _float_images(run: Run, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW pixels as the model's float input in [0, 1] (contiguous: Captum's gradients)."""
    return run.modality.eval_inputs([pixels], run.config.train)[0].float().contiguous()


def image_heatmaps(run: Run, pixels: torch.Tensor, steps: int = STEPS, batch: int = 16,
                   occlusion: bool = True) -> Heatmaps:
    """Heatmaps for uint8 NCHW images, from the training rows' mean colour, explaining the class
    the model predicts for each."""
    x = _float_images(run, pixels)
    mean = torch.tensor(run.preprocess["mean"], dtype=x.dtype).view(1, -1, 1, 1).expand_as(x).contiguous()
    return input_heatmaps(explained_model(run), x, mean, steps, batch, occlusion=occlusion)


def explain_images(run: Run, data, out, rows: int) -> dict:
    """Write explain.html (each image with its IG and occlusion heatmaps), heatmaps.safetensors
    and explanations.csv (prediction, probability, where each heatmap peaks) into `out`."""
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
    captions = [str(p)[:14] for p in predicted["prediction"]]
    summary = write_heatmap_page(out, f"Why {run.path.name} predicts what it does", maps, images.images, captions,
                                 "Integrated Gradients and occlusion (Captum), from the training mean colour")
    summary["headline"] = f"heatmaps of {len(images)} images"
    return summary


class ImageExplainer(Explainer):
    def explain(self, run: Run, data, out, rows: int) -> dict:
        return explain_images(run, data, out, rows)

    def mistakes_section(self, run: Run, a: Assessment, chosen: np.ndarray, captions: list[str]) -> str:
        from scaletrain.modalities.image.preprocess import transform_images

        images = a.source.items.images[a.rows[chosen]]
        maps = image_heatmaps(run, transform_images(images), occlusion=False).ig
        return ("<h2>The most confident mistakes (test)</h2>" + overlay_html(
            "mistakes", "true → predicted (probability); Integrated Gradients for the predicted class over each "
                        "(red: towards it, blue: against)", images, list(maps), captions))


EXPLAINER = ImageExplainer()  # found by explain/__init__.explainer_for under the modality's name
