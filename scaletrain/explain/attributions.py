"""Integrated Gradients (Captum) for table runs, summed back to the raw columns.

The model's inputs are the dense block (standardized numbers, missing indicators, one-hot
slots) and, for high-cardinality categories, their embedding vectors: IG runs on both, from
an all-zero baseline (every number at its training mean, no category, nothing missing),
towards the output of the class the model predicts (its logit; the value for regression),
and each raw column gets the sum of its slots. Completeness — a row's attributions add up to
f(row) − f(baseline) — is what makes the numbers readable as "how much each column moved the
output"; `delta` reports how far from it the integral's approximation is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from scaletrain.data.preprocess import feature_columns
from scaletrain.errors import ExportError
from scaletrain.run import Run

STEPS = 256  # Gauss-Legendre points: completeness within 0.6% on a 300-row check (2% at 64)


@dataclass
class Attributions:
    frame: pd.DataFrame     # one row per explained row, one column per raw column
    output: np.ndarray      # f(row) for the explained output
    baseline: np.ndarray    # f(baseline)
    delta: np.ndarray       # completeness error per row
    target: np.ndarray      # the explained class index (0 for regression)


def _explainable(run: Run):
    model = run.model
    if not hasattr(model, "body") or not hasattr(model, "embeddings"):
        raise ExportError(f"explain handles table runs (linear, mlp); this run's model is {run.config.model.name}")
    return model


def table_attributions(run: Run, frame: pd.DataFrame, steps: int = STEPS) -> Attributions:
    """Per-row attributions of the raw columns for `frame`'s rows."""
    from captum.attr import IntegratedGradients

    model = _explainable(run).eval()
    source = run.source(frame)
    inputs, _ = run.encode(source)
    dense = inputs[0].float()
    categories = inputs[1] if len(inputs) > 1 else torch.zeros((len(dense), 0), dtype=torch.long)
    with torch.no_grad():
        embedded = torch.cat([dense[:, :0]] + [e(categories[:, i]) for i, e in enumerate(model.embeddings)], dim=1)
        # free text is held as it is (its words are attributed by taking them out: explain/text.py)
        text = model.text(*inputs[2:]) if model.text is not None else dense[:, :0]
        linear_text = model.text_linear(inputs[2], per_sample_weights=inputs[3]) if model.text_linear is not None \
            else torch.zeros((len(dense), 1))

    def forward(d: torch.Tensor, e: torch.Tensor, t: torch.Tensor, lin: torch.Tensor) -> torch.Tensor:
        return model.body(torch.cat([d, e, t], dim=1)) + lin

    fixed = (text, linear_text)
    with torch.no_grad():
        out = forward(dense, embedded, *fixed)
    target = torch.zeros(len(dense), dtype=torch.long) if out.shape[1] == 1 else out.argmax(dim=1)
    explained = out.gather(1, target[:, None]).squeeze(1).numpy()
    if dense.shape[1] + embedded.shape[1] == 0:  # free text alone: nothing here to integrate over
        return Attributions(pd.DataFrame(index=range(len(dense))), explained, explained, np.zeros(len(dense)),
                            target.numpy())
    baselines = (torch.zeros_like(dense), torch.zeros_like(embedded))
    ig = IntegratedGradients(forward)
    (a_dense, a_embedded), delta = ig.attribute((dense, embedded), baselines=baselines, target=target, n_steps=steps,
                                                additional_forward_args=fixed, return_convergence_delta=True)
    with torch.no_grad():
        base = forward(*baselines, *fixed).gather(1, target[:, None]).squeeze(1)
    by_column = pd.DataFrame(a_dense.detach().numpy(), columns=feature_columns(run.preprocess)).T.groupby(level=0, sort=False).sum().T
    width = model.embeddings[0].embedding_dim if len(model.embeddings) else 0
    for i, col in enumerate(run.preprocess["embed"]):
        by_column[col["name"]] = a_embedded[:, i * width:(i + 1) * width].sum(dim=1).detach().numpy()
    return Attributions(by_column.reset_index(drop=True), explained, base.numpy(), delta.detach().numpy(), target.numpy())


def permutation_importance(run: Run, frame: pd.DataFrame, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """The drop in the task's score when one raw column's values are shuffled among the rows
    (labelled rows; the global view beside the attributions' mean magnitude)."""
    from scaletrain.evaluate.metrics import main_score_name

    score = main_score_name(run.task)
    columns = list(dict.fromkeys(feature_columns(run.preprocess) + [c["name"] for c in run.preprocess["embed"]]
                                 + run.preprocess.get("text", {}).get("columns", [])))
    reference = run.evaluate(frame)[score]
    rng, drops = np.random.default_rng(seed), {}
    for column in columns:
        scores = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[column] = shuffled[column].to_numpy()[rng.permutation(len(frame))]
            scores.append(run.evaluate(shuffled)[score])
        drops[column] = float(reference - np.mean(scores))
    return drops
