"""Full-batch L-BFGS (`train.optimizer=lbfgs`) for small in-memory problems.

A weight-decayed linear model's loss is convex: L-BFGS solves it to convergence in a few dozen
iterations (milliseconds on a few thousand rows) where Adam needs thousands of steps, so its
L2 strength can be chosen by k-fold cross-validation over a grid, as scikit-learn's
LogisticRegressionCV and RidgeCV do. Written here rather than fitted by scikit-learn because
the model is scaletrain's own module (category embeddings, the run format, export), and the
same loss, class weights and outputs serve every optimizer.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn

from scaletrain.data.prepared import Prepared
from scaletrain.data.split import kfold_splits
from scaletrain.models.tabular import TEXT_L2_SCALE
from scaletrain.tasks import task_of
from scaletrain.tasks.regression import level_values
from scaletrain.train import device
from scaletrain.train.callbacks import History
from scaletrain.train.loop import Callback, LoopSettings, TrainState
from scaletrain.train.losses import LossFn, training_loss
from scaletrain.train.trainer import Validation

MAX_ITERATIONS = 500
RELEVANCE_FLOOR = 0.05  # a piece that tells nothing apart: penalized 400× the base, not infinitely
L2_GRID = tuple(10.0 ** k for k in range(1, -7, -1))  # strongest first: each fit warm-starts the next
CV_FOLDS = 5
MIN_CV_ROWS = 10 * CV_FOLDS  # below: scikit-learn's default strength (C=1, i.e. L2 = 1/n)
# From this many training rows the strength is chosen on the validation rows (one path of fits)
# instead of 5 folds (five paths): 12k clothing reviews took 20 s a fit, 45 fits in 5-fold CV;
# with 2,000 rows and more the validation split alone measures the losses to ~2%.
VALIDATION_CHOICE_ROWS = 2000


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """Half the squared norm of the weight matrices (biases and norms are not penalized), each
    scaled by its `l2_scale` where a module sets one (models/tabular.py: TF-IDF weights)."""
    return 0.5 * sum((getattr(p, "l2_scale", 1.0) * p.pow(2)).sum() for p in model.parameters()
                     if p.dim() >= 2 and p.requires_grad)  # frozen (train.freeze) tensors: a constant


def weigh_pieces(model: nn.Module, inputs: tuple, y: torch.Tensor, task: str) -> bool:
    """Per-piece L2 from the labels (model.text_relevance): each piece's (and pair's) weights in
    the linear TF-IDF part penalized by the base scale over its relevance squared (the task's
    measure, floored at RELEVANCE_FLOOR) — as NBSVM scales features by their Naive Bayes ratios,
    a piece that tells the classes apart costs less to use. Not a default: clothing reviews →
    recommended gained test AUC (0.9555 → 0.9601) in 1.7× the time, but of the text panel's
    corpora two lost macro F1 (man pages up to 3 points) (BENCHMARKS.md). False where the model
    or task has none."""
    text = getattr(model, "text_linear", None)
    # every class the outputs hold (a fold may lack one; one logit: two classes)
    classes = max(text.weight.shape[1], 2) if text is not None and task_of(task).classifies else 0
    counts = model.piece_counts(inputs, y, classes) if text is not None and classes else None
    relevance = None if counts is None else task_of(task).piece_relevance(counts, text.weight.shape[1])
    if relevance is None:
        return False
    text.weight.l2_scale = TEXT_L2_SCALE / relevance.clamp(min=RELEVANCE_FLOOR).pow(2).to(text.weight.device)
    return True


def fit_lbfgs(model: nn.Module, inputs: tuple, y: torch.Tensor, loss_fn: LossFn, l2: float,
              max_iter: int = MAX_ITERATIONS) -> tuple[float, int]:
    """Minimize mean loss + l2 * penalty over all rows at once; return (final loss, iterations)."""
    optimizer = torch.optim.LBFGS([p for p in model.parameters() if p.requires_grad], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    model.train()

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(*inputs), y) + l2 * l2_penalty(model)
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    model.eval()
    return float(loss.detach()), optimizer.state[optimizer.param_groups[0]["params"][0]].get("n_iter", 0)


@torch.no_grad()
def held_out(model: nn.Module, inputs: tuple, y: torch.Tensor, loss_fn: LossFn, classifies: bool) -> tuple[float, int]:
    """The loss on held-out rows, and (classification) how many of them the argmax gets right."""
    out = model(*inputs)
    hits = 0 if not classifies else int((out.argmax(dim=1) == y).sum()) if out.shape[1] > 1 else \
        int(((out.squeeze(1) > 0).long() == y).sum())
    return float(loss_fn(out, y)), hits


def choose_l2(fresh_model: Callable[[], nn.Module], inputs: tuple, y: torch.Tensor, loss_fn: LossFn, task: str,
              seed: int) -> tuple[float, dict[float, float]]:
    """The L2 strength scikit-learn's estimators default to (C=1 or alpha=1: 1/n on a mean loss)
    unless one on the grid beats it in 5-fold cross-validation by more than the folds' noise (the
    paired differences of loss, mean plus one standard error, below 0) and, for classification,
    decides more held-out rows right; and each strength's mean loss.

    Why not simply the lowest loss: on nearly separable tables log loss keeps falling as the
    penalty weakens while the decisions get no better. Chosen on ten small tables kept apart
    from the panel (iris, wine, breast cancer, Pima.tr, biopsy, Mroz, crabs, Womenlf, birthwt,
    Cowles; 3 splits each, the linear model alone): mean macro F1 0.7773 for this rule, 0.7768
    without the decisions' condition, 0.7715 for the lowest loss, 0.7668 for the best fold
    accuracy (LogisticRegressionCV's rule), 0.7487 for the strongest penalty within one standard
    error (glmnet's lambda.1se); LogisticRegression(C=1) 0.7736."""
    default = 1.0 / max(len(y), 1)
    if len(y) < MIN_CV_ROWS:
        return default, {}
    grid = tuple(sorted({default, *L2_GRID}))
    fold_losses: dict[float, list[float]] = {l2: [] for l2 in grid}
    fold_hits: dict[float, float] = dict.fromkeys(grid, 0.0)  # classification: held-out rows decided right
    for kept, held in kfold_splits(y.cpu().numpy(), task_of(task).classifies, seed, CV_FOLDS):
        kept, held = torch.from_numpy(kept).to(y.device), torch.from_numpy(held).to(y.device)
        model = fresh_model()
        # the same tensors for every strength: a frozen pretrained encoder (PooledText) then
        # computes each fold's features once
        fold_in, held_in = tuple(x[kept] for x in inputs), tuple(x[held] for x in inputs)
        for l2 in sorted(grid, reverse=True):  # warm-started along the path, strongest first
            fit_lbfgs(model, fold_in, y[kept], loss_fn, l2)
            loss, hits = held_out(model, held_in, y[held], loss_fn, task_of(task).classifies)
            fold_losses[l2].append(loss)
            fold_hits[l2] += hits
    losses = {l2: torch.tensor(v) for l2, v in fold_losses.items() if all(map(math.isfinite, v))}
    means = {l2: float(v.mean()) for l2, v in losses.items()}
    if default not in losses:
        return (min(means, key=means.get) if means else L2_GRID[0]), means
    best = min(means, key=means.get)
    difference = losses[best] - losses[default]
    wins = float(difference.mean() + difference.std() / math.sqrt(len(difference))) < 0
    wins = wins and (not task_of(task).classifies or fold_hits[best] > fold_hits[default])
    return (best if wins else default), means


def fit_full_batch(model: nn.Module, fresh_model: Callable[[], nn.Module], prepared: Prepared, cfg,
                   outputs_fn: Callable, score, callbacks: list[Callback]) -> tuple[TrainState, History, dict]:
    """Train in place by L-BFGS on the training rows (the L2 strength chosen by cross-validation
    when `train.weight_decay` is None, and written back into it; per-piece L2 from the labels
    where `model.text_relevance` is on); return the state, a one-row history and the held-out
    loss of each strength tried."""
    t, task, on = cfg.train, prepared.task, next(model.parameters()).device
    inputs, y = device.to_device(prepared.train_inputs, on), prepared.train_y.to(on)
    loss_fn = training_loss(t, task, prepared.class_counts(), levels=level_values(prepared.target))
    path = {}
    started = time.perf_counter()
    weighed = cfg.model.text_relevance == "on" and weigh_pieces(model, inputs, y, task)
    if t.weight_decay is None and on_validation(len(y), len(prepared.val_y)):
        val = device.to_device(prepared.val_inputs, on), prepared.val_y.to(on)
        t.weight_decay, path = l2_on_validation(model, inputs, y, val, loss_fn)
        iterations = 0  # the chosen strength's fit is the model: the path ends on it
    else:
        if t.weight_decay is None:
            fresh = (lambda: _weighed(fresh_model(), inputs, y, task)) if weighed else fresh_model
            t.weight_decay, path = choose_l2(fresh, inputs, y, loss_fn, task, t.seed)
        loss, iterations = fit_lbfgs(model, inputs, y, loss_fn, t.weight_decay)
    history = History()
    state = TrainState(model, None, LoopSettings(epochs=1, lr=1.0), total_steps=iterations, step=iterations,
                       lr=1.0, started=started)
    with torch.no_grad():
        state.train_loss = float(loss_fn(model(*inputs), y))
    listed = [history] + list(callbacks)
    for cb in listed:
        cb.on_train_begin(state)
    state.val = Validation(outputs_fn, prepared.val_inputs, prepared.val_y, loss_fn, score)(model)
    for cb in listed:
        cb.on_epoch_end(state)
    for cb in listed:
        cb.on_train_end(state)
    return state, history, path


def _weighed(model: nn.Module, inputs: tuple, y: torch.Tensor, task: str) -> nn.Module:
    weigh_pieces(model, inputs, y, task)
    return model


def on_validation(train_rows: int, val_rows: int) -> bool:
    """Whether the L2 strength is chosen on the validation rows rather than by k-fold CV."""
    return train_rows >= VALIDATION_CHOICE_ROWS and val_rows >= MIN_CV_ROWS


def l2_on_validation(model: nn.Module, inputs: tuple, y: torch.Tensor, val: tuple, loss_fn: LossFn) -> tuple[float, dict]:
    """The strength on the grid (and scikit-learn's default) with the lowest validation loss, by
    one warm-started path of fits from the strongest; `model` is left fitted at that strength
    (refitted when the path went past it). Returns it and each strength's validation loss."""
    grid = sorted({1.0 / max(len(y), 1), *L2_GRID}, reverse=True)
    losses: dict[float, float] = {}
    for l2 in grid:
        fit_lbfgs(model, inputs, y, loss_fn, l2)
        losses[l2] = float(held_out(model, *val, loss_fn, classifies=False)[0])
        if math.isfinite(losses[l2]) and losses[l2] > 1.02 * min(losses.values()):
            break  # past the best: weaker penalties from here only fit the training rows closer
    best = min(losses, key=losses.get)
    if best != l2:
        fit_lbfgs(model, inputs, y, loss_fn, best)
    return best, losses
