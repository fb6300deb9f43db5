"""Within a table's image columns: which pixels of a row's image moved its prediction.
Integrated Gradients and occlusion heatmaps (explain/heatmaps.py) over one image column's
pixels, the row's other inputs (numbers, text, other images) held as they are, measured from
the column's mean colour: what this image added over an average one, given the rest of the row."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from scaletrain.data.sounds import is_sound
from scaletrain.explain.heatmaps import SHOWN, Heatmaps, input_heatmaps, overlay_figure
from scaletrain.explain.readout import explained_model
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
    """Per image column (not sound columns): the heatmaps of up to `rows` rows whose image was read, those images
    (uint8, rows × height × width × channels) and the rows' positions in `frame`."""
    inputs, _ = run.encode(run.source(frame))
    found = {}
    for j, column in enumerate(run.preprocess.get("images", [])):
        if is_sound(column):  # a sound column's credit is its column's (explain/attributions.py); no pixels within
            continue
        seen = torch.nonzero(inputs[PICTURES_AT - 1][:, j] == 0).flatten()[:rows]
        pixels = inputs[PICTURES_AT + j][seen]
        x = pixels.float().contiguous()
        mean = (torch.tensor(column["mean"]) * 255).view(1, -1, 1, 1).expand_as(x).contiguous()
        maps = input_heatmaps(_OneColumn(explained_model(run), j), x, mean, fixed=tuple(t[seen] for t in inputs))
        found[column["name"]] = (maps, pixels.permute(0, 2, 3, 1).numpy(), seen.numpy())
    return found


def pictures_section(found: dict, predictions) -> tuple[str, dict]:
    """explain.html's figures (each image with its Integrated Gradients map over it) and
    importance.json's numbers for each image column."""
    from scaletrain.evaluate.report import figure_html

    body, summary = "", {}
    for column, (maps, images, rows) in found.items():
        gap = np.abs(maps.ig.sum(axis=(1, 2)) - (maps.output - maps.baseline))
        summary[column] = {"rows": len(rows), "completeness_max_abs_error": float(gap.max()) if len(gap) else 0.0,
                           "method": "Integrated Gradients and occlusion over the column's pixels, the row's other "
                                     "inputs held, from the column's mean colour"}
        captions = [f"row {r}: {str(predictions[r])[:10]}" for r in rows]
        body += figure_html(f"pixels-{column}", f"Pixels of '{column}' that moved each row's prediction (Integrated "
                            "Gradients; red: towards the predicted class, blue: against)",
                            overlay_figure(images, list(maps.ig), captions))
    return body, summary
