"""Zero-config's candidates: each trained, then one chosen on the validation split (by
cross-validation on small data: scaletrain/fitting/folds.py) and, if linear, refit on every row."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scaletrain.config import Config, ModelConfig
from scaletrain.data.prepared import Prepared
from scaletrain.errors import ConfigError
from scaletrain.evaluate.metrics import score_outputs
from scaletrain.models.ensemble import Ensemble, average_for, combine
from scaletrain.models.registry import build_model
from scaletrain.parallel import distributed
from scaletrain.run import Run
from scaletrain.tasks.regression import level_values
from scaletrain.train import device
from scaletrain.train.assembly import Checkpointing, LoopPlan
from scaletrain.train.blend import blend_weights
from scaletrain.train.budget import Budget
from scaletrain.train.full_batch import CV_FOLDS as L2_FOLDS
from scaletrain.train.full_batch import fit_full_batch, on_validation
from scaletrain.train.losses import training_loss
from scaletrain.train.setup import extra_generators, loss_for, placed_model, training_batches
from scaletrain.train.sizing import find_lr
from scaletrain.train.trainer import LossChoice, ValidationSet, fit_model

OCCAM_MARGIN = 0.05
# a blend whose weights were chosen on the validation rows must beat the chosen candidate there
# by this share of its loss: the weights have seen those rows (out-of-fold weights need no margin)
BLEND_MARGIN = 0.01


@dataclass
class Trained:
    run: Run
    state: object
    seconds: float
    best_epoch: int
    best_val_loss: float
    l2_chosen: bool = False  # lbfgs: its L2 strength was cross-validated (a refit chooses it anew)
    members: list[Trained] | None = None  # a blend: its members as trained (a refit retrains each)
    weights_out_of_fold: bool = False     # a blend: weights from out-of-fold outputs (small data: refit)

    def __post_init__(self) -> None:
        self.run.config.frozen()  # trained: what it was trained with is settled (the rate, L2, width, trees)


def stopped_on_time(t: Trained) -> bool:
    """Whether the candidate's training was ended by its share of the time limit."""
    limit = getattr(t.state, "time_limit", None)
    return bool(limit) and t.state.elapsed >= limit


def label_of(config: Config) -> str:
    """A candidate's name in notes and metrics: its model, and the inputs it reads where it does
    not read them all ("mlp:table": every column but the images and sounds; fitting/recipe.py)."""
    return config.model.name if config.model.inputs == "all" else f"{config.model.name}:{config.model.inputs}"


def inputs_note(trained: list[Trained], run: Run) -> str:
    """Which inputs the kept model reads and what each added on the validation rows: the model
    over all of them against each model that reads some alone (fused inputs)."""
    def best_score(t: Trained) -> float:
        return max((row["val_score"] for row in t.run.history if "val_score" in row), default=float("nan"))

    fused = next((t for t in trained if t.run.config.model.inputs == "all"), None)
    media = "column(s) " + ", ".join(f"'{c['name']}'" for c in run.preprocess.get("images", []))  # images, sounds
    added = [f"{media if t.run.config.model.inputs == 'table' else 'the other columns'} added "
             f"{best_score(fused) - best_score(t):+.4f} over {label_of(t.run.config)} ({best_score(t):.4f})"
             for t in trained if fused is not None and t.run.config.model.inputs != "all"]
    reads = {"all": "every input", "table": "the table's other columns alone", "images": f"{media} alone"}
    return (f"inputs: the kept model ({label_of(run.config)}) reads {reads[run.config.model.inputs]}"
            + (f"; against {label_of(fused.run.config)} ({best_score(fused):.4f}) on the validation rows, "
               + ", ".join(added) if added else ""))


def train_candidate(cfg: Config, prepared: Prepared, checkpoint_dir: Path | None, verbose: bool,
                    resume: bool = False, budget: Budget | None = None, callbacks: list | None = None) -> Trained:
    """Build the model a resolved config names, train it, and return the result (its config a
    copy, settled as trained: the range test's rate, the L2 strength, the trees grown)."""
    cfg = cfg.thawed()
    torch.set_num_threads(cfg.train.threads)
    budget = budget or Budget(None)
    if cfg.model.name == "boosted":
        return fit_by_boosting(cfg, prepared)
    model, spec = placed_model(cfg, prepared)
    run = Run(cfg, model, spec, prepared.preprocess)
    started = time.perf_counter()
    score = lambda out, y: score_outputs(prepared.task, out, y, prepared.target)  # noqa: E731
    if cfg.train.optimizer == "lbfgs":
        return fit_by_lbfgs(cfg, prepared, run, started, score, callbacks)
    batches = training_batches(cfg, prepared)
    if cfg.train.lr_find is True:
        find_lr(cfg, model, batches, prepared, budget)
        cfg.train.lr = float(distributed.broadcast_text(repr(cfg.train.lr)))  # rank 0's pick, on every rank
    checkpointing = None if checkpoint_dir is None else Checkpointing(
        checkpoint_dir, cfg.checkpoint, cfg.to_dict(), resume, extra_generators(batches))
    plan = LoopPlan(budget.from_now(), checkpointing, callbacks or [], "training" if verbose else None)
    loss = LossChoice(prepared.task, prepared.class_counts(), levels=level_values(prepared.target))
    state, history, stopper = fit_model(model, batches, cfg.train, loss,
                                        ValidationSet(run.outputs, prepared.val_inputs, prepared.val_y, score), plan)
    if cfg.train.fsdp and distributed.world().active:  # the shards gathered into one plain model, on rank 0
        full = distributed.full_state(model, fsdp=True)  # a collective: every rank takes part
        if distributed.world().main:
            gathered = build_model(spec, cfg.model)
            gathered.load_state_dict(full)
            run.model = device.place(gathered, cfg.train.device)
        else:  # its shard freed now: nothing may hold the process group past its end
            run.model = distributed.ReleasedShard()
    run.model.eval()
    run.history = history.rows
    losses = [row.get("val_loss", math.inf) for row in history.rows] or [math.inf]
    best_epoch = (stopper.best_epoch + 1) if stopper and stopper.best_epoch >= 0 else len(history.rows)
    return Trained(run, state, time.perf_counter() - started, best_epoch, min(losses) if stopper else losses[-1])


def fit_by_lbfgs(cfg: Config, prepared: Prepared, run: Run, started: float, score, callbacks) -> Trained:
    """Train by full-batch L-BFGS (in memory, one process), the L2 strength cross-validated if unset."""
    if prepared.shard_url is not None or distributed.world().active:
        raise ConfigError("train.optimizer=lbfgs takes every training row at once: it needs the rows in memory "
                          "and one process; use adamw for shards or several ranks")
    chosen = cfg.train.weight_decay is None
    by_validation = chosen and on_validation(len(prepared.train_y), len(prepared.val_y))
    state, history, path = fit_full_batch(run.model, lambda: placed_model(cfg, prepared)[0], prepared, cfg,
                                          run.outputs, score, callbacks or [])
    if chosen and path:
        how = "on the validation rows" if by_validation else f"by {L2_FOLDS}-fold cross-validation"
        prepared.note(f"{cfg.model.name}: L2 strength (train.weight_decay) {cfg.train.weight_decay:g} chosen {how} "
                      f"over {min(path):g}..{max(path):g}")
    run.history = history.rows
    val_loss = history.rows[-1].get("val_loss", math.inf)
    # chosen on the validation rows: a refit on them keeps the strength (there is nothing left to choose on)
    return Trained(run, state, time.perf_counter() - started, 1, val_loss, l2_chosen=chosen and not by_validation)


def fit_by_boosting(cfg: Config, prepared: Prepared) -> Trained:
    """Grow boosted trees (one process, rows in memory), compile them into the run's model and
    record their shape in its config so the run directory rebuilds them."""
    from scaletrain.train.boosted import fit_boosted
    from scaletrain.train.loop import LoopSettings, TrainState
    from scaletrain.train.setup import model_spec
    from scaletrain.train.trainer import Validation

    if distributed.world().active:
        raise ConfigError("model.name=boosted grows trees in one process; use mlp under torchrun or Ray")
    started = time.perf_counter()
    spec = model_spec(cfg, prepared)
    # no early stopping (a cross-validation fold): as many rounds as the early-stopped fit chose
    rounds = max(1, cfg.model.trees // spec.n_out) if cfg.train.early_stopping == 0 and cfg.model.trees else None
    model, measured = fit_boosted(prepared, spec.n_out, cfg.train.threads, cfg.train.seed,
                                  cfg.train.class_weight == "balanced", rounds)
    cfg.model.trees, cfg.model.width, cfg.model.depth = measured["trees"], model.feature.shape[1], model.depth
    run = Run(cfg, model, spec, prepared.preprocess)
    loss_fn = loss_for(cfg.train, prepared)
    val = Validation(run.outputs, prepared.val_inputs, prepared.val_y, loss_fn,
                     lambda out, y: score_outputs(prepared.task, out, y, prepared.target))(model) if len(prepared.val_y) else {}
    state = TrainState(model, None, LoopSettings(epochs=1, lr=cfg.train.lr or 0.0), total_steps=measured["rounds"],
                       step=measured["rounds"], lr=0.0, started=started)
    with torch.no_grad():
        state.train_loss = float(loss_fn(run.outputs(prepared.train_inputs), prepared.train_y))
    run.history = [{"epoch": 1, "step": measured["best_round"], "train_loss": state.train_loss, **val,
                    "seconds": round(time.perf_counter() - started, 3)}]
    prepared.note(f"boosted: LightGBM, {measured['trees']} trees ({measured['best_round']} rounds: the best "
                  "on the validation rows, early stopping)")
    return Trained(run, state, time.perf_counter() - started, 1, val.get("val_loss", math.inf))


def choose(trained: list[Trained]) -> Trained:
    """Return the simplest candidate unless bigger ones beat its validation loss by > 5%, then
    the lowest validation loss among those.

    Candidates come simplest first; on a few dozen validation rows a small win is noise, and
    an early-stopped MLP reports its best epoch's loss (a minimum over epochs, biased low)
    while the linear model reports its last: the simpler model is the safer bet.
    """
    simplest = best = trained[0]
    for candidate in trained[1:]:  # each against the simplest; the lowest loss among those that beat it
        if candidate.best_val_loss < simplest.best_val_loss * (1 - OCCAM_MARGIN) and \
                (best is simplest or candidate.best_val_loss < best.best_val_loss):
            best = candidate
    return best


def refits(best: Trained, trained: list[Trained]) -> bool:
    """Zero-config's convex candidate (the linear model, or a linear probe of a frozen
    pretrained encoder: both solved by L-BFGS), once chosen, is refit on every row; so is a
    linear probe named alone (with few labels every row counts, and nothing stops early), and a
    blend without a time limit (each member as long as it trained, the weights kept: on small
    data the validation rows are too many to leave out, as for the linear model)."""
    t = best.run.config.train
    if best.members is not None:
        return best.weights_out_of_fold or not t.time_limit
    return t.optimizer == "lbfgs" and (len(trained) > 1 or t.freeze == 1)


def refit_on_all_rows(best: Trained, prepared: Prepared) -> Trained:
    """Return the chosen linear model retrained, same config, on training + validation rows.

    With a few hundred rows the validation split is too valuable to leave out of the final
    fit; a linear model trained to convergence needs no validation rows to stop on (measured
    on diabetes over 5 splits: R² 0.423 without the refit, 0.428 with it; RidgeCV 0.429).
    """
    merged = replace(prepared,
                     train_inputs=tuple(torch.cat([a, b]) for a, b in zip(prepared.train_inputs, prepared.val_inputs)),
                     train_y=torch.cat([prepared.train_y, prepared.val_y]), train_rows=None, train_class_counts=None)
    if best.members is not None:
        refit = _refit_blend(best, merged)
    else:
        cfg = best.run.config.with_values({"train.weight_decay": None}) if best.l2_chosen else best.run.config.thawed()
        refit = train_candidate(cfg, merged, None, False)  # L-BFGS to convergence: no time share
    prepared.note(f"the {best.run.config.model.name} model was refit on training + validation rows "
                  "(so its validation metrics are optimistic)")
    return Trained(refit.run, refit.state, refit.seconds + best.seconds, best.best_epoch, best.best_val_loss)


def _refit_blend(best: Trained, merged: Prepared) -> Trained:
    """Each member retrained on every row for as long as it trained the first time (its best
    epoch, its trees' rounds; a linear member to convergence), blended with the same weights."""
    fitted = []
    for member in best.members:
        cfg = member.run.config.thawed()
        if cfg.train.optimizer == "lbfgs":
            cfg = cfg.with_values({"train.weight_decay": None}) if member.l2_chosen else cfg
        else:
            cfg = cfg.with_values({"train.epochs": max(1, member.best_epoch), "train.early_stopping": 0,
                                   "train.lr_find": False, "train.time_limit": None})
        fitted.append(train_candidate(cfg, merged, None, False))
    run = best.run
    model = Ensemble([f.run.model for f in fitted], run.spec.average, list(run.config.model.weights))
    config = run.config.thawed()
    config.model.members = [f.run.config.model for f in fitted]  # the trees' counts as regrown
    # the refit members' spec: sized on every row (a linear member's hashed piece pairs grow with them)
    blend = Run(config, model, replace(fitted[0].run.spec, average=run.spec.average), run.preprocess,
                history=run.history)
    return Trained(blend, best.state, sum(f.seconds for f in fitted), best.best_epoch, best.best_val_loss)


def beats_by_noise(losses: torch.Tensor, reference: torch.Tensor) -> bool:
    """Per-row losses lower than the reference's by more than one standard error of the paired
    differences (the cross-validated choice's rule, folds.py): on wine's 20 validation rows a
    blend that won by chance replaced a linear model that would have been refit on every row."""
    difference = losses - reference
    return len(difference) > 1 and float(difference.mean() + difference.std() / math.sqrt(len(difference))) < 0


def _alike(best: Trained, trained: list[Trained], held_out: list | None) -> tuple[list[Trained], list | None]:
    """The candidates whose outputs have the chosen one's form (a regression's level logits are
    not mixed with values), and their out-of-fold outputs."""
    keep = [i for i, t in enumerate(trained) if t.run.spec.n_out == best.run.spec.n_out]
    return [trained[i] for i in keep], None if held_out is None else [held_out[i] for i in keep]


def stopped_on_validation(trained: Trained) -> bool:
    """Whether the validation rows chose when the candidate stopped (an early-stopped network's
    best epoch, the trees' best round): its outputs there are then optimistic."""
    t = trained.run.config.train
    return trained.run.config.model.name == "boosted" or (t.optimizer != "lbfgs" and bool(t.early_stopping))


def blendable(best: Trained, trained: list[Trained]) -> list[Trained]:
    """The candidates whose validation outputs may weigh a blend with the chosen one (without
    out-of-fold outputs, see blended): all of them where the chosen one was itself stopped on
    those rows; otherwise (a linear model, a network trained for fixed epochs) only those that
    were not either."""
    if stopped_on_validation(best):
        return trained
    return [t for t in trained if t is best or not stopped_on_validation(t)]


def blended(best: Trained, trained: list[Trained], prepared: Prepared,
            held_out: list[torch.Tensor] | None = None) -> tuple[Trained, dict | None]:
    """The candidates blended (train/blend.py) with weights chosen on their out-of-fold outputs
    (`held_out`, over the training rows) or else on the validation rows; kept where the blend's
    validation losses beat the chosen candidate's by more than their noise (and by BLEND_MARGIN
    when the weights saw those rows); and what was measured. A user then gets no less than the
    best of the candidates, boosted trees included, and more where they err differently.

    Without out-of-fold outputs the pipeline blends an early-stopped member (an MLP's best
    epoch, the trees' best round) only where the chosen candidate was itself stopped on the
    validation rows (`blendable`): such a member's outputs there are optimistic, and against a
    linear model that was not tuned on them the blend wins by that bias — BBC News, one split:
    validation loss 0.18 against the linear model's 0.22, test log loss 0.073 against 0.040,
    macro F1 0.963 against 0.987."""
    if len(trained) < 2 or not len(prepared.val_y) or best.run.config.train.blend == "off" or distributed.world().active:
        return best, None  # several ranks: one candidate each (a sharded model's forward is a collective)
    trained, held_out = _alike(best, trained, held_out)
    if len(trained) < 2:
        return best, None
    run = best.run
    average = average_for(prepared.task, run.spec.n_out)
    loss_fn = loss_for(run.config.train, prepared)
    val_outputs = [t.run.outputs(prepared.val_inputs).float() for t in trained]
    on = (held_out, prepared.train_y) if held_out is not None else (val_outputs, prepared.val_y)
    weights = blend_weights(on[0], on[1], average, loss_fn)
    kept = [i for i, w in enumerate(weights) if w > 0]
    blend_out = combine(torch.stack([val_outputs[i] for i in kept]), average, [weights[i] for i in kept])
    chosen_out, y = val_outputs[trained.index(best)], prepared.val_y
    single, mixed = float(loss_fn(chosen_out, y)), float(loss_fn(blend_out, y))
    per_row = training_loss(run.config.train, prepared.task, prepared.class_counts(), reduction="none",
                            levels=level_values(prepared.target))
    keep = len(kept) > 1 and (run.config.train.blend == "on" or (
        beats_by_noise(per_row(blend_out, y).double(), per_row(chosen_out, y).double())
        and mixed < single * (1 - (0 if held_out is not None else BLEND_MARGIN))))
    names = [label_of(trained[i].run.config) for i in kept]
    info = {"kept": keep, "weights_on": "out-of-fold" if held_out is not None else "validation",
            "weights": {n: round(weights[i], 4) for n, i in zip(names, kept)},
            "val_loss": {"blend": mixed, label_of(run.config): single}}
    prepared.note(f"blend of {', '.join(f'{n} {weights[i]:.2f}' for n, i in zip(names, kept))} "
                  f"(weights on the {info['weights_on']} outputs): validation loss {mixed:.4f} against "
                  f"{single:.4f} for {label_of(run.config)} alone; "
                  + ("the blend is kept" if keep else f"{label_of(run.config)} is kept"))
    if not keep:
        return best, info
    cfg = run.config.thawed()
    cfg.model = ModelConfig(name="blend", members=[trained[i].run.config.model for i in kept],
                            weights=[round(weights[i], 6) for i in kept])
    model = Ensemble([trained[i].run.model for i in kept], average, cfg.model.weights)
    blend = Run(cfg, model, replace(run.spec, average=average), run.preprocess, history=run.history)
    return Trained(blend, best.state, sum(t.seconds for t in trained), best.best_epoch, mixed,
                   members=[trained[i] for i in kept], weights_out_of_fold=held_out is not None), info
