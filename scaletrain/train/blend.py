"""Weights for a blend of zero-config's candidates, chosen on held-out predictions.

Greedy ensemble selection with replacement (Caruana et al. 2004, what AutoGluon's weighted
ensemble does): start from the best single candidate, then in each round add the candidate
whose addition lowers the blend's loss most; a candidate's weight is the share of rounds that
picked it. Written here rather than taken from a library because it is twenty lines over
tensors the pipeline already holds, and the blend must be our own torch module (saved,
exported to ONNX, served). Few rounds over few candidates cannot fit much noise; the pipeline
still keeps a blend only where it beats the chosen candidate on rows the weights never saw,
or by a margin where they are the same rows.
"""
from __future__ import annotations

from typing import Callable

import torch

from scaletrain.models.ensemble import combine

ROUNDS = 20  # weights in steps of 1/20: finer steps fit the held-out rows' noise


def blend_weights(outputs: list[torch.Tensor], y: torch.Tensor, average: str,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], rounds: int = ROUNDS) -> list[float]:
    """Each candidate's weight (summing to 1) from its held-out outputs and the true targets."""
    stacked = torch.stack([o.float() for o in outputs])
    counts = torch.zeros(len(outputs))
    for _ in range(rounds):
        losses = []
        for i in range(len(outputs)):
            trial = counts.clone()
            trial[i] += 1
            losses.append(float(loss_fn(combine(stacked, average, (trial / trial.sum()).tolist()), y)))
        counts[min(range(len(losses)), key=losses.__getitem__)] += 1  # ties: the earlier (simpler) candidate
    return (counts / counts.sum()).tolist()
