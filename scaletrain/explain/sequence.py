"""Step attributions for sequence runs: Integrated Gradients and occlusion of one step at a
time (Captum) over each row's standardized steps, from the all-zero sequence — every feature
at the training steps' mean — with the row's length and other numbers held as they are. Where
the heat sits says which steps, and which of their features, moved the decision; padding
gets none (the models never read it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scaletrain.data.sources import subset_source
from scaletrain.explain.base import Explainer
from scaletrain.explain.gradients import integrated_gradients
from scaletrain.explain.heatmaps import STEPS, Heatmaps, overlay_html, write_heatmap_page
from scaletrain.explain.readout import explained_model
from scaletrain.run import Assessment, Run

AXES = " over the steps (across) and each step's features (up)"


def step_heatmaps(run: Run, inputs: tuple[torch.Tensor, ...], batch: int = 16, occlusion: bool = True) -> Heatmaps:
    """IG and (unless `occlusion` is False) occlusion maps (rows, features, steps) explaining each
    row's predicted class."""
    from captum.attr import Occlusion

    model = explained_model(run).float().eval()
    steps, held = inputs[0].float().contiguous(), tuple(inputs[1:])
    zeros = torch.zeros_like(steps)
    with torch.no_grad():
        out, base = model(steps, *held), model(zeros, *held)
    target = torch.zeros(len(steps), dtype=torch.long) if out.shape[1] == 1 else out.argmax(dim=1)
    ig, occluded, maps = integrated_gradients(model), Occlusion(model), ([], [])
    for start in range(0, len(steps), batch):
        part = slice(start, start + batch)
        extra = tuple(x[part] for x in held)
        maps[0].append(ig.attribute(steps[part], baselines=zeros[part], target=target[part], n_steps=STEPS,
                                    additional_forward_args=extra, internal_batch_size=batch * 8).detach())
        if occlusion:
            maps[1].append(occluded.attribute(steps[part], sliding_window_shapes=(1, steps.shape[2]),
                                              strides=(1, steps.shape[2]), baselines=0.0, target=target[part],
                                              additional_forward_args=extra, perturbations_per_eval=16).detach())
    ig_maps, occlusion_maps = (torch.cat(m).transpose(1, 2).contiguous().numpy() if m else None for m in maps)
    return Heatmaps(ig_maps, occlusion_maps, target.numpy(), out.gather(1, target[:, None]).squeeze(1).numpy(),
                    base.gather(1, target[:, None]).squeeze(1).numpy())


def explain_sequences(run: Run, data, out: Path, rows: int) -> dict:
    """Write explain.html (each row's steps with its IG and occlusion maps), heatmaps.safetensors
    and explanations.csv (the prediction, and the step and feature where the IG map peaks)."""
    source = run.source(data)
    chosen = subset_source(source, np.arange(min(rows, len(source))))
    inputs = run.encode(chosen)[0]
    maps = step_heatmaps(run, inputs)
    predicted = run.predict(chosen.frame).reset_index(drop=True)
    feature, step = np.unravel_index(np.abs(maps.ig).reshape(len(maps.ig), -1).argmax(axis=1), maps.ig.shape[1:])
    predicted[["prediction"]].assign(row=np.arange(len(predicted)), peak_step=step, peak_feature=feature)[
        ["row", "prediction", "peak_step", "peak_feature"]].to_csv(out / "explanations.csv", index=False)
    captions = [str(p)[:14] for p in predicted["prediction"]]
    summary = write_heatmap_page(out, f"Why {run.path.name} predicts what it does", maps,
                                 inputs[0].transpose(1, 2).numpy(), captions,
                                 "Integrated Gradients and occlusion of each step (Captum), from the training steps' "
                                 "mean", origin="lower", axes=AXES)
    summary["headline"] = f"step heatmaps of {len(maps.ig)} sequences"
    return summary


class SequenceExplainer(Explainer):
    def explain(self, run: Run, data, out, rows: int) -> dict:
        return explain_sequences(run, data, out, rows)

    def mistakes_section(self, run: Run, a: Assessment, chosen: np.ndarray, captions: list[str]) -> str:
        inputs = run.encode(subset_source(a.source, a.rows[chosen]))[0]
        maps = step_heatmaps(run, inputs, occlusion=False).ig
        return ("<h2>The most confident mistakes (test)</h2>" + overlay_html(
            "mistakes", f"true → predicted (probability): each row's standardized steps{AXES}, with Integrated "
                        "Gradients for the predicted class over them (red: towards it, blue: against)",
            inputs[0].transpose(1, 2).numpy(), list(maps), captions, origin="lower"))


EXPLAINER = SequenceExplainer()  # found by explain/__init__.explainer_for under the modality's name
