"""Within a table's image columns: which pixels of a row's image moved its prediction.
Integrated Gradients and occlusion heatmaps (explain/heatmaps.py) over one image column's
pixels, the row's other inputs (numbers, text, other images) held as they are, measured from
the column's mean colour: what this image added over an average one, given the rest of the row.
Within a sound column, the same over the clip's standardized log-mel spectrogram (which bands,
when), from the all-zero one: every band at the training clips' mean level."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from scaletrain.data.sounds import is_sound
from scaletrain.explain.heatmaps import SHOWN, Heatmaps, input_heatmaps, overlay_html
from scaletrain.explain.readout import explained_model
from scaletrain.models.tabular import Pictures
from scaletrain.run import Run

PICTURES_AT = 5  # the table model's inputs: dense, categories, tokens, weights, absent, then each column's pixels


class _OneColumn(nn.Module):
    """The table model as a function of one image column's pixels (floats on the 0..255 scale
    its encoder reads), the row's other inputs given after them."""

    def __init__(self, model: nn.Module, index: int):
        super().__init__()
        self.model, self.index = model, index

    def forward(self, pixels: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        inputs = list(inputs)
        inputs[PICTURES_AT + self.index] = pixels
        return self.model(*inputs)


def column_heatmaps(run: Run, frame, rows: int = SHOWN) -> dict[str, tuple[Heatmaps, np.ndarray, np.ndarray]]:
    """Per media column: the heatmaps of up to `rows` rows whose image or clip was read, those
    images (uint8, rows × height × width × channels) or spectrograms (rows × bands × frames) and
    the rows' positions in `frame`."""
    inputs, _ = run.encode(run.source(frame))
    found = {}
    for j, column in enumerate(run.preprocess.get("images", [])):
        seen = torch.nonzero(inputs[PICTURES_AT - 1][:, j] == 0).flatten()[:rows]
        if is_sound(column):
            found[column["name"]] = _spectrogram_heatmaps(run, inputs, j, seen)
            continue
        pixels = inputs[PICTURES_AT + j][seen]
        x = pixels.float().contiguous()
        mean = (torch.tensor(column["mean"]) * 255).view(1, -1, 1, 1).expand_as(x).contiguous()
        maps = input_heatmaps(_OneColumn(explained_model(run), j), x, mean, fixed=tuple(t[seen] for t in inputs))
        found[column["name"]] = (maps, pixels.permute(0, 2, 3, 1).numpy(), seen.numpy())
    return found


def _spectrogram_heatmaps(run: Run, inputs: tuple, j: int, seen: torch.Tensor):
    """A sound column's heatmaps over its clips' log-mel spectrograms: the model explained is a
    copy whose column encoder reads the spectrogram past its front (the waveform's transform)."""
    model = copy.deepcopy(explained_model(run))
    encoder = next(m for m in model.modules() if isinstance(m, Pictures)).encoders[j]
    with torch.no_grad():
        spectrograms = encoder.front(inputs[PICTURES_AT + j][seen].float()).contiguous()
    encoder.front = nn.Identity()
    maps = input_heatmaps(_OneColumn(model, j), spectrograms, torch.zeros_like(spectrograms),
                          fixed=tuple(t[seen] for t in inputs))
    return maps, spectrograms[:, 0].numpy(), seen.numpy()


def pictures_section(found: dict, predictions) -> tuple[str, dict]:
    """explain.html's figures (each image with its Integrated Gradients map over it) and
    importance.json's numbers for each image column."""
    body, summary = "", {}
    for column, (maps, images, rows) in found.items():
        gap = np.abs(maps.ig.sum(axis=(1, 2)) - (maps.output - maps.baseline))
        sound = images.ndim == 3  # spectrograms: bands × frames, the lowest band drawn at the bottom
        summary[column] = {"rows": len(rows), "completeness_max_abs_error": float(gap.max()) if len(gap) else 0.0,
                           "method": "Integrated Gradients and occlusion over the " + (
                               "clip's log-mel spectrogram, the row's other inputs held, from the training clips' "
                               "mean level" if sound else "column's pixels, the row's other inputs held, from the "
                               "column's mean colour")}
        captions = [f"row {r}: {str(predictions[r])[:10]}" for r in rows]
        what = f"Bands and moments of '{column}' (time across, mel bands up)" if sound else f"Pixels of '{column}'"
        body += overlay_html(f"pixels-{column}", f"{what} that moved each row's prediction (Integrated "
                             "Gradients; red: towards the predicted class, blue: against)",
                             images, list(maps.ig), captions, origin="lower" if sound else "upper")
    return body, summary
