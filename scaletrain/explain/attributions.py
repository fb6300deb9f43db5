"""Attributions for table runs, measured against the data and summed back to the raw columns.

The model's inputs are the dense block (standardized numbers, missing indicators, one-hot
slots) and, for high-cardinality categories, their embedding vectors. Each row is explained
against the run's background sample (background.safetensors: 100 encoded training rows), not
against an all-zero input: zero is "no category at all" for a one-hot or embedded column, a
point no row can take, and from it every row got full credit for being whatever category it
is (ISLR Default: `student` named the top reason for 1,335 of 2,000 test rows). A row's
attributions are the average over the background rows of its attributions from each — SHAP's
interventional reading — so they add up to f(row) − mean f(background) (completeness), and a
linear model's are its exact Shapley values.

Trees, blends and bagged ensembles, which no gradient rule reads, are attributed by Shapley
value sampling over the raw columns against the same background rows (explain/sampled.py).
How each network path is attributed was picked by measurement against exact Shapley values (every
coalition of columns enumerated: tests/shapley.py; BENCHMARKS.md): DeepLIFT's rescale rule
(Captum's DeepLiftShap) where the network is Linear layers, affine normalization and
elementwise activations it knows — one forward/backward pass per path, completeness exact,
closest to the exact values; Integrated Gradients averaged over the paths (Expected
Gradients, by Gauss-Legendre quadrature) for any other network. Runs written before a
background was kept are explained from the all-zero input, as they were.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from scaletrain.errors import ExportError
from scaletrain.explain.gradients import deep_lift, integrated_gradients
from scaletrain.explain.readout import contrasted, readout_of
from scaletrain.explain.sampled import ORDERS, sampled_attributions
from scaletrain.modalities.table.preprocess import feature_columns
from scaletrain.models.combiners import Concat
from scaletrain.models.tabular import nonempty
from scaletrain.run import Run

STEPS = 16  # Integrated Gradients (networks DeepLIFT does not cover): Gauss-Legendre points per path
FUSED_STEPS = 16  # times as many behind a gated or attention combiner
COMPLETENESS = 0.02  # a row whose Integrated Gradients miss its output by more than this share of the largest...
REFINEMENTS = 1  # ...is integrated again with twice the points, at most this many times
ROWS_PER_PASS = 65_536  # path points evaluated in one pass (rows x background rows x steps, chunked)
# what DeepLIFT's rescale rule treats exactly: affine layers and the elementwise activations Captum knows
AFFINE = (nn.Linear, nn.BatchNorm1d, nn.Dropout, nn.Identity, nn.Sequential)
RESCALED = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)


@dataclass
class Attributions:
    frame: pd.DataFrame     # one row per explained row, one column per raw column
    output: np.ndarray      # f(row) for the explained output
    baseline: np.ndarray    # the background rows' mean output (f(0) for runs without a background)
    delta: np.ndarray       # completeness error per row
    target: np.ndarray      # the explained class index (0 for regression)


def _has_network_body(run: Run) -> bool:
    return hasattr(run.model, "body") and hasattr(run.model, "embeddings")


def _explainable(run: Run):
    if run.preprocess.get("kind") != "table":
        raise ExportError(f"explain handles table runs (linear, mlp, boosted, blend); this run's model is "
                          f"{run.config.model.name} on {run.preprocess.get('kind')} data")
    return run.model


def table_attributions(run: Run, frame: pd.DataFrame, steps: int = STEPS, paths: int | None = None,
                       method: str = "auto", orders: int = ORDERS) -> Attributions:
    """Per-row attributions of the raw columns for `frame`'s rows, measured against the run's
    background sample (`paths` of its rows per explained row; all by default), or from the
    all-zero input for runs written before a background was kept. `method`: deeplift, ig, or
    auto (DeepLIFT where the network allows it); `orders`: column orders per path where
    Shapley values are sampled (models without a network body)."""
    model = _explainable(run).eval()
    inputs, _ = run.encode(run.source(frame))
    dense, categories = _dense_and_codes(inputs)
    if not _has_network_body(run):  # trees, blends, bagged ensembles: no gradient rule reads them
        return _sampled(run, model, inputs, paths, orders)
    with torch.no_grad():
        embedded = _embedded(model, categories)
        # free text is held as it is (its words are attributed by taking them out: explain/text.py)
        text = model.text(*inputs[2:]) if model.text is not None else dense[:, :0]
        linear_text = model.linear_text(inputs[2], inputs[3]) if model.text_linear is not None \
            and getattr(model, "reads_table", True) else torch.zeros((len(dense), 1))
        pictured = _pictured(model, inputs)

    readout = readout_of(run)
    forward = _Explained(model, readout).eval()
    with torch.no_grad():
        out = forward(dense, embedded, pictured, text, linear_text)
    target = torch.zeros(len(dense), dtype=torch.long) if out.shape[1] == 1 else out.argmax(dim=1)
    explained = out.gather(1, target[:, None]).squeeze(1).numpy()
    if dense.shape[1] + embedded.shape[1] + pictured.shape[1] == 0:  # free text alone: nothing here to integrate over
        return Attributions(pd.DataFrame(index=range(len(dense))), explained, explained, np.zeros(len(dense)),
                            target.numpy())
    background = _background(run, model, paths, dense, embedded) + (_missing_pictures(model),)
    background = background[:2] + (background[2].expand(len(background[0]), -1),)
    rescaled = method == "deeplift" or (method == "auto" and isinstance(model.combine, Concat) and all(
        isinstance(m, AFFINE + RESCALED) for m in model.body.modules())  # a gate or attention multiplies inputs
        and readout is contrasted)  # as a softmax over a regression's levels does
    # their softmax over the inputs bends the path: 16x the points, then more for the rows still off (_refined)
    steps = steps if isinstance(model.combine, Concat) else FUSED_STEPS * steps
    tensors = [dense, embedded, pictured, text, linear_text, target]
    found = _integrated(forward, tensors, background, None if rescaled else steps)
    a_dense, a_embedded, a_pictured, base = found if rescaled else _refined(forward, tensors, background, steps,
                                                                           found, explained)
    by_column = _by_column(run, model, a_dense, a_embedded, a_pictured)
    delta = by_column.sum(axis=1).to_numpy() - (explained - base.numpy())
    return Attributions(by_column, explained, base.numpy(), delta, target.numpy())


def _sampled(run: Run, model: nn.Module, inputs: tuple, paths: int | None, orders: int) -> Attributions:
    """Shapley value sampling over the raw columns (explain/sampled.py), in chunks of rows."""
    dense, codes = _dense_and_codes(inputs)
    fixed = tuple(inputs[2:])

    readout = readout_of(run)

    def forward(d, c, *text):
        return readout(model(d, c, *text))

    with torch.no_grad():
        out = forward(dense, codes, *fixed)
    target = torch.zeros(len(dense), dtype=torch.long) if out.shape[1] == 1 else out.argmax(dim=1)
    if run.background is None:
        background = (torch.zeros_like(dense[:1]), torch.zeros_like(codes[:1]))
    else:
        background = (run.background["dense"].float()[:paths], run.background["categories"].long()[:paths])
    per_pass = max(1, ROWS_PER_PASS // len(background[0]))
    parts = [sampled_attributions(run, forward, dense[i:i + per_pass], codes[i:i + per_pass],
                                  tuple(x[i:i + per_pass] for x in fixed), background, target[i:i + per_pass], orders)
             for i in range(0, len(dense), per_pass)]
    frame = pd.DataFrame(np.concatenate([p[0] for p in parts]), columns=parts[0][1]) if parts else pd.DataFrame()
    base = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    explained = out.gather(1, target[:, None]).squeeze(1).numpy()
    delta = frame.sum(axis=1).to_numpy() - (explained - base)
    return Attributions(frame, explained, base, delta, target.numpy())


class _Explained(nn.Module):
    """The table network from its dense block, embedded categories and image columns' vectors
    (free text held as given), its outputs read out as explained (readout_of)."""

    def __init__(self, model: nn.Module, readout):
        super().__init__()
        self.body, self.combine, self.readout = model.body, model.combine, readout
        self.reads_table = getattr(model, "reads_table", True)
        self.widths = model.pictures.widths if getattr(model, "pictures", None) is not None else []

    def forward(self, dense, embedded, pictured, text, linear_text):
        groups = [torch.cat([dense, embedded], dim=1), text] if self.reads_table else []
        groups += list(torch.split(pictured, self.widths, dim=1)) if self.widths else []
        unused = 0 * (dense.sum(dim=1, keepdim=True) + embedded.sum(dim=1, keepdim=True)  # a block without features
                      + pictured.sum(dim=1, keepdim=True))  # stays in the graph: Captum differentiates each input
        return self.readout(self.body(self.combine(nonempty(groups))) + linear_text + unused)


def _pictured(model, inputs: tuple) -> torch.Tensor:
    """The image columns' vectors as the body reads them (a missing image's: the learned one)."""
    if getattr(model, "pictures", None) is None:
        return inputs[0][:, :0].float()
    return torch.cat(model.pictures(inputs[4], tuple(inputs[5:])), dim=1)


def _missing_pictures(model) -> torch.Tensor:
    """What an image column's attribution is measured from: the model's own vector for a row
    without that image (so a column's credit is what seeing its image added)."""
    if getattr(model, "pictures", None) is None:
        return torch.zeros((1, 0))
    return torch.cat([vector.detach() for vector in model.pictures.missing]).reshape(1, -1)


def _integrated(forward: nn.Module, tensors: list[torch.Tensor], background, steps: int | None) -> list[torch.Tensor]:
    per_pass = max(1, ROWS_PER_PASS // (len(background[0]) * (steps or 1)))
    chunks = [_averaged_paths(forward, [x[i:i + per_pass] for x in tensors], background, steps)
              for i in range(0, len(tensors[0]), per_pass)]  # bounded memory per pass
    return [torch.cat(parts) for parts in zip(*chunks)]


def _refined(forward: nn.Module, tensors: list[torch.Tensor], background, steps: int, found: list[torch.Tensor],
             explained: np.ndarray) -> list[torch.Tensor]:
    """Rows whose columns' sum misses f(row) − baseline by more than COMPLETENESS of the largest
    output, integrated again with twice the points, at most REFINEMENTS times: the quadrature
    misses most where a row's paths cross a sharp bend, and only a few rows' paths do."""
    scale, wanted = float(np.abs(explained).max()) or 1.0, torch.from_numpy(explained)
    for _ in range(REFINEMENTS):
        missed = sum(a.sum(dim=1) for a in found[:3]) - (wanted - found[3])
        loose = (missed.abs() > COMPLETENESS * scale).nonzero().squeeze(1)
        if not len(loose):
            break
        steps *= 2
        for whole, part in zip(found, _integrated(forward, [x[loose] for x in tensors], background, steps)):
            whole[loose] = part
    return found


def _averaged_paths(forward: nn.Module, rows: list[torch.Tensor], background, steps: int | None):
    """Each row's attributions from every background row, averaged over them (DeepLIFT's
    rescale rule, or Integrated Gradients with `steps` quadrature points), and the background's
    mean output."""
    import warnings

    dense, embedded, pictured, text, linear_text, target = rows
    n, b = len(dense), len(background[0])

    def each(x: torch.Tensor) -> torch.Tensor:  # every row once per background row
        return x.repeat_interleave(b, dim=0)

    fixed, bases, targets = (each(text), each(linear_text)), tuple(x.repeat(n, 1) for x in background), each(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's notes on the hooks it sets and removes
        attributed = (each(dense), each(embedded), each(pictured))
        if steps is None:
            found = deep_lift(forward).attribute(attributed, baselines=bases, target=targets, additional_forward_args=fixed)
        else:
            found = integrated_gradients(forward).attribute(attributed, baselines=bases, target=targets, n_steps=steps,
                                                           additional_forward_args=fixed)
    with torch.no_grad():
        base = forward(*bases, *fixed).gather(1, targets[:, None]).reshape(n, b).mean(dim=1)
    return (*(a.detach().reshape(n, b, -1).mean(dim=1) for a in found), base)


def _dense_and_codes(inputs) -> tuple[torch.Tensor, torch.Tensor]:
    dense = inputs[0].float()
    return dense, inputs[1] if len(inputs) > 1 else torch.zeros((len(dense), 0), dtype=torch.long)


def _embedded(model, categories: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros((len(categories), 0))] + [e(categories[:, i]) for i, e in enumerate(model.embeddings)],
                     dim=1)


def _background(run: Run, model, paths: int | None, dense: torch.Tensor, embedded: torch.Tensor):
    """The inputs the attributions start from: the run's background rows (real rows, so a
    category is always some category), or for older runs one all-zero input."""
    if run.background is None:
        return torch.zeros_like(dense[:1]), torch.zeros_like(embedded[:1])
    sample_dense, codes = run.background["dense"].float(), run.background["categories"].long()
    if paths is not None:
        sample_dense, codes = sample_dense[:paths], codes[:paths]
    with torch.no_grad():
        return sample_dense, _embedded(model, codes)


def _by_column(run: Run, model, a_dense: torch.Tensor, a_embedded: torch.Tensor,
               a_pictured: torch.Tensor) -> pd.DataFrame:
    """Slot attributions summed to the raw columns they come from."""
    by_column = pd.DataFrame(a_dense.numpy(), columns=feature_columns(run.preprocess)).T.groupby(level=0, sort=False).sum().T
    width = model.embeddings[0].embedding_dim if len(model.embeddings) else 0
    for i, col in enumerate(run.preprocess["embed"]):
        by_column[col["name"]] = a_embedded[:, i * width:(i + 1) * width].sum(dim=1).numpy()
    if getattr(model, "pictures", None) is not None:
        ends = torch.tensor([len(vector) for vector in model.pictures.missing]).cumsum(0).tolist()
        for col, start, end in zip(run.preprocess["images"], [0] + ends, ends):
            by_column[col["name"]] = a_pictured[:, start:end].sum(dim=1).numpy()
    if not getattr(model, "reads_table", True):  # the images alone: the other columns had no say
        by_column = by_column[[c["name"] for c in run.preprocess["images"]]]
    return by_column.reset_index(drop=True)


def permutation_importance(run: Run, frame: pd.DataFrame, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """The drop in the task's score when one raw column's values are shuffled among the rows
    (labelled rows; the global view beside the attributions' mean magnitude)."""
    from scaletrain.evaluate.metrics import main_score_name

    score = main_score_name(run.task)
    columns = list(dict.fromkeys(feature_columns(run.preprocess) + [c["name"] for c in run.preprocess["embed"]]
                                 + run.preprocess.get("text", {}).get("columns", [])
                                 + [c["name"] for c in run.preprocess.get("images", [])]))
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
