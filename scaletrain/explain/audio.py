"""Time-frequency attributions for sound runs: Integrated Gradients and occlusion heatmaps
(explain/heatmaps.py) over each clip's standardized log-mel spectrogram, from the all-zero
spectrogram — every band at the training clips' mean level, the clip the model has heard on
average. Where the heat sits says which bands, at which moments, moved the decision."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scaletrain.data.sources import subset_source
from scaletrain.explain.base import Explainer
from scaletrain.explain.heatmaps import Heatmaps, input_heatmaps, overlay_html, write_heatmap_page
from scaletrain.explain.readout import explained_model
from scaletrain.run import Assessment, Run


def clip_heatmaps(run: Run, spectrograms: torch.Tensor, occlusion: bool = True) -> Heatmaps:
    x = spectrograms.float().contiguous()
    return input_heatmaps(explained_model(run), x, torch.zeros_like(x), occlusion=occlusion)


def _peaks(run: Run, heat: np.ndarray) -> dict[str, np.ndarray]:
    """Where each heatmap is strongest, in Hz (the band's centre) and seconds."""
    from scaletrain.data.log_mel import mel_band_centres

    s = run.preprocess
    band, frame = np.unravel_index(np.abs(heat).reshape(len(heat), -1).argmax(axis=1), heat.shape[1:])
    centres = mel_band_centres(s["rate"], s["n_fft"], s["n_mels"], s["fmin"], s["fmax"])
    return {"peak_hz": np.round(centres[band]), "peak_seconds": np.round(frame * s["hop"] / s["rate"], 3)}


def explain_clips(run: Run, data, out: Path, rows: int) -> dict:
    """Write explain.html (each clip's spectrogram with its IG and occlusion heatmaps),
    heatmaps.safetensors and explanations.csv (prediction, where the IG heatmap peaks)."""
    source = run.source(data)
    clips = source.items.subset(np.arange(min(rows, len(source.items))))
    spectrograms = run.encode(subset_source(source, np.arange(len(clips))))[0][0]
    maps = clip_heatmaps(run, spectrograms)
    predicted = run.predict(data).iloc[:len(clips)].reset_index(drop=True)
    predicted[["clip", "prediction"]].assign(**_peaks(run, maps.ig)).to_csv(out / "explanations.csv", index=False)
    captions = [str(p)[:14] for p in predicted["prediction"]]
    summary = write_heatmap_page(out, f"Why {run.path.name} predicts what it does", maps, spectrograms[:, 0].numpy(),
                                 captions, "Integrated Gradients and occlusion (Captum) on the log-mel spectrogram, "
                                           "from the training clips' mean spectrum", origin="lower",
                                 axes=" over time (across) and mel bands (up)")
    summary["headline"] = f"time-frequency heatmaps of {len(clips)} clips"
    return summary


class AudioExplainer(Explainer):
    def explain(self, run: Run, data, out, rows: int) -> dict:
        return explain_clips(run, data, out, rows)

    def mistakes_section(self, run: Run, a: Assessment, chosen: np.ndarray, captions: list[str]) -> str:
        spectrograms = run.encode(subset_source(a.source, a.rows[chosen]))[0][0]
        maps = clip_heatmaps(run, spectrograms, occlusion=False).ig
        return ("<h2>The most confident mistakes (test)</h2>" + overlay_html(
            "mistakes", "true → predicted (probability): each clip's log-mel spectrogram (time across, bands up) with "
                        "Integrated Gradients for the predicted class over it (red: towards it, blue: against)",
            spectrograms[:, 0].numpy(), list(maps), captions, origin="lower"))


EXPLAINER = AudioExplainer()  # found by explain/__init__.explainer_for under the modality's name
