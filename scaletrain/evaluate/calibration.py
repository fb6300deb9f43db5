"""Calibrated probabilities: temperature scaling (Guo et al. 2017) fitted on validation rows.

One number T divides the model's logits before the softmax (or sigmoid): it changes how sure
the probabilities are, never which class is most likely. It is kept only when it lowers the
validation rows' negative log-likelihood; the tuned decision threshold is then chosen on the
calibrated probabilities (fitting.decisions.set_threshold runs after it).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from scaletrain.tasks.classification import probabilities

ECE_BINS = 15
# T within [0.22, 4.5]: where validation rows are all classified right their NLL falls without
# end as T -> 0 (digits, zero-config: T hit e^-3 and every mistake got probability ~1)
LOG_BOUND = 1.5


def nll(outputs: torch.Tensor, y: np.ndarray, loss: str, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under the (tempered) outputs."""
    proba = probabilities(outputs / temperature, loss).double().numpy()
    return float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def fit_temperature(outputs: torch.Tensor, y: np.ndarray, loss: str) -> float:
    """The T in [e^-1.5, e^1.5] that minimizes the NLL of these rows (a 1-d bounded search on log T)."""
    found = minimize_scalar(lambda log_t: nll(outputs, y, loss, float(np.exp(log_t))), bounds=(-LOG_BOUND, LOG_BOUND),
                            method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the rows' mean gap between confidence (the top probability) and accuracy, in equal-width bins."""
    confidence, predicted = proba.max(axis=1), proba.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(confidence[inside].mean() - (predicted[inside] == y[inside]).mean())
    return float(gap)


def brier(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean squared distance between the probabilities and the one-hot labels."""
    onehot = np.eye(proba.shape[1])[y]
    return float(((proba - onehot) ** 2).sum(axis=1).mean())


def uncalibrated(proba: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before the temperature: softmax(T·log p) undoes softmax(z / T)
    (and sigmoid(z / T) for a binary model's two columns)."""
    logs = np.log(np.clip(proba.astype(np.float64), 1e-300, 1.0)) * temperature
    logs -= logs.max(axis=1, keepdims=True)
    raw = np.exp(logs)
    return raw / raw.sum(axis=1, keepdims=True)


def reliability_bins(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of confidence: its rows' mean confidence, their accuracy, their count."""
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == y
    which = np.clip(np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    mean = np.bincount(which, confidence, minlength=bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, correct.astype(float), minlength=bins) / np.maximum(count, 1)
    return mean, accuracy, count
