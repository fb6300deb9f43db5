"""One complete fit: data read and prepared, the recipe's candidates trained, one chosen (and
refit), evaluated, and the run directory written. `api.fit`, tune, cv, the estimators and the
benchmarks all call `fit_run`; nothing here imports from them."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch

from scaletrain import distributed
from scaletrain.auto import candidate_configs
from scaletrain.budget import Budget
from scaletrain.config import Config
from scaletrain.data.prepared import Prepared
from scaletrain.data.preprocess import decode_target
from scaletrain.errors import ConfigError
from scaletrain.evaluate.metrics import compute_metrics, main_score_name, per_class_metrics, score_outputs
from scaletrain.evaluate.report import build_report
from scaletrain.evaluate.threshold import tune_threshold
from scaletrain.modalities import load_source, load_test_source, modality, prepare
from scaletrain.models.registry import build_model
from scaletrain.run import Run
from scaletrain.rundir import RunDir
from scaletrain.runtime import keep_freed_memory
from scaletrain.train import device
from scaletrain.train.setup import extra_generators, placed_model, seed_everything, training_batches
from scaletrain.train.sizing import find_lr, size_for_budget
from scaletrain.train.trainer import fit_model
from scaletrain.version import VERSION as __version__

OCCAM_MARGIN = 0.05


@dataclass
class Trained:
    run: Run
    state: object
    seconds: float
    best_epoch: int
    best_val_loss: float


@dataclass
class FitOptions:
    """How a fit runs, beside what it trains (the Config) and on what (the data)."""

    out: str | Path | None = None   # a run directory, "auto" for runs/<data>-<time>, None: none written
    verbose: bool = False
    resume: bool = False
    callbacks: list | None = None   # join the training loop's (a tuner's pruning)
    report_sections: list[str] | None = None  # HTML sections appended to report.html


def fit_run(config: Config, data, *, y=None, test=None, options: FitOptions | None = None,
            budget: Budget | None = None) -> Run:
    """Train on raw data with a validated config and return the Run (written to options.out).

    `budget` bounds the whole fit (default: the config's time limit, counted from now)."""
    options = options or FitOptions()
    budget = budget or Budget(config.train.time_limit)
    keep_freed_memory()
    if options.resume and options.out in (None, "auto"):
        raise ConfigError("resuming needs the run directory of the interrupted run: give --out DIR")
    created = distributed.init(config.train.device)  # a torchrun worker joins its process group
    try:
        run = _fit(config, data, y, test, options, budget)
    except BaseException:
        distributed.finish(created, wait=False)  # no barrier: the other ranks may never reach it
        raise
    distributed.finish(created)
    return run


def _fit(cfg: Config, data, y, test, options: FitOptions, budget: Budget) -> Run:
    w = distributed.world()
    verbose = options.verbose and w.main  # one progress bar, one report: rank 0's
    resume = options.resume or (distributed.restarted() and options.out not in (None, "auto"))  # by the launcher
    seed_everything(cfg.train.seed)
    source, prepared = load_and_prepare(cfg, data, y, test)
    out_dir = run_directory(options.out, source.name)
    candidates = plan_candidates(cfg, prepared, budget)
    loading = budget.elapsed()
    trained = []
    for candidate in candidates:  # each with its share of the limit (its config's time limit)
        checkpoints = out_dir / "checkpoints" if out_dir else None
        if checkpoints and len(candidates) > 1:
            checkpoints = checkpoints / candidate.model.name
        share = budget.share(len(candidates), loading)
        trained.append(train_candidate(candidate, prepared, checkpoints, verbose, resume, share, options.callbacks))
    best = choose(trained)
    decision = set_threshold(best.run, prepared)
    selection_val = None
    if len(trained) > 1 and best.run.config.model.name == "linear" and len(prepared.val_y):
        # a tuner compares runs on validation rows the refit has seen: keep the honest figure
        selection_val = best.run.evaluate(prepared.val_source)
        best = refit_on_all_rows(best, prepared)
        best.run.preprocess = best.run.preprocess | {"target": decision_target(best.run, decision)}
    if not w.main:  # rank 0 evaluates and writes the run directory
        return best.run
    finish_run(best, trained, prepared, selection_val)
    if decision is not None:
        best.run.metrics["threshold"] = decision
    if out_dir is not None:
        write_run(best.run, out_dir, source.name, options.report_sections)
    return best.run


def load_and_prepare(cfg: Config, data, y, test) -> tuple:
    """The training source read and prepared (split, preprocessing fitted on training rows)."""
    size = (cfg.data.image_size, cfg.data.image_size) if cfg.data.image_size else None
    source = load_source(data, y, size=size, channels=cfg.data.channels)
    test_source = load_test_source(source, test) if test is not None else None
    return source, prepare(source, test_source, cfg.data, cfg.train.seed)


def default_out(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def run_directory(out, name: str) -> Path | None:
    """The run directory every rank writes to (a time-stamped one named once, on rank 0)."""
    if out is None:
        return None
    out_dir = Path(distributed.broadcast_text(str(default_out(name)))) if out == "auto" else Path(out)
    if distributed.world().main:
        out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def plan_candidates(cfg: Config, prepared: Prepared, budget: Budget) -> list[Config]:
    """The resolved configs to train: the recipe's candidates, adjusted for the ranks and,
    under a time limit, a conv net narrowed until enough epochs fit."""
    w = distributed.world()
    candidates = candidate_configs(cfg, modality(prepared.kind).facts(prepared))
    if len(candidates) > 1 and not len(prepared.val_y):  # nothing to choose on: the simplest is trained
        prepared.notes.append(f"no validation rows to choose between {', '.join(c.model.name for c in candidates)}: "
                              f"trained {candidates[0].model.name}")
        candidates = candidates[:1]
    if w.active:
        candidates = [distributed.per_rank(c, cfg) for c in candidates]
    if cfg.train.fsdp:
        prepared.notes.append(f"FSDP over {w.size} ranks: weights sharded, no mid-run checkpoints (the final model "
                              "is gathered)" if w.active else "train.fsdp needs several ranks; trained unsharded")
    if budget.limited and cfg.model.width is None:
        candidates = [size_for_budget(c, prepared, budget) for c in candidates]
        for c in candidates:  # each rank timed its own steps: rank 0's choice holds for all
            c.model.width = int(distributed.broadcast_text(str(c.model.width)))
    return candidates


def train_candidate(cfg: Config, prepared: Prepared, checkpoint_dir: Path | None, verbose: bool,
                    resume: bool = False, budget: Budget | None = None, callbacks: list | None = None) -> Trained:
    """Build the model a resolved config names, train it, and return the result."""
    torch.set_num_threads(cfg.train.threads)
    budget = budget or Budget(None)
    model, spec = placed_model(cfg, prepared)
    run = Run(cfg, model, spec, prepared.preprocess)
    started = time.perf_counter()
    batches = training_batches(cfg, prepared)
    if cfg.train.lr_find is True:
        find_lr(cfg, model, batches, prepared, budget)
        cfg.train.lr = float(distributed.broadcast_text(repr(cfg.train.lr)))  # rank 0's pick, on every rank
    state, history, stopper = fit_model(
        model, batches, prepared.class_counts(), run.outputs, prepared.val_inputs, prepared.val_y,
        cfg.train, cfg.checkpoint, prepared.task, generators=extra_generators(batches),
        checkpoint_dir=checkpoint_dir, verbose=verbose, config=cfg.to_dict(),
        resume=resume, budget=budget.from_now(), callbacks=callbacks,
        score=lambda out, y: score_outputs(prepared.task, out, y))
    if cfg.train.fsdp and distributed.world().active:  # the shards gathered into one plain model, on rank 0
        full = distributed.full_state(model, fsdp=True)  # a collective: every rank takes part
        if distributed.world().main:
            gathered = build_model(spec, cfg.model)
            gathered.load_state_dict(full)
            run.model = device.place(gathered, cfg.train.device)
    run.model.eval()
    run.history = history.rows
    losses = [row.get("val_loss", math.inf) for row in history.rows] or [math.inf]
    best_epoch = (stopper.best_epoch + 1) if stopper and stopper.best_epoch >= 0 else len(history.rows)
    return Trained(run, state, time.perf_counter() - started, best_epoch, min(losses) if stopper else losses[-1])


def set_threshold(run: Run, prepared: Prepared) -> dict | None:
    """Tune the binary decision threshold on the validation rows for `train.threshold_metric`
    and store it with the run's target state (predict applies it); return what was measured."""
    metric = run.config.train.threshold_metric
    if metric == "none" or run.task != "binary" or not len(prepared.val_y):
        return None
    _, proba = run.predict_encoded(prepared.val_inputs)
    decision = tune_threshold(prepared.val_y.numpy(), proba[:, 1], metric)
    run.preprocess = {**run.preprocess, "target": decision_target(run, decision)}
    prepared.notes.append(f"decision threshold {decision['threshold']:.3f} tuned on validation rows for {metric} "
                          f"({decision['score_at_half']:.4f} at 0.5, {decision['score']:.4f} there; validation "
                          "metrics are measured at it, so they are optimistic)")
    return decision


def decision_target(run: Run, decision: dict | None) -> dict:
    """The run's target state with the tuned threshold (none: the plain argmax)."""
    target = {k: v for k, v in run.preprocess["target"].items() if k != "threshold"}
    return target | ({"threshold": decision["threshold"]} if decision else {})


def choose(trained: list[Trained]) -> Trained:
    """Return the simplest candidate unless a bigger one beats its validation loss by > 5%.

    Candidates come simplest first; on a few dozen validation rows a small win is noise, and
    an early-stopped MLP reports its best epoch's loss (a minimum over epochs, biased low)
    while the linear model reports its last: the simpler model is the safer bet.
    """
    best = trained[0]
    for candidate in trained[1:]:
        if candidate.best_val_loss < best.best_val_loss * (1 - OCCAM_MARGIN):
            best = candidate
    return best


def refit_on_all_rows(best: Trained, prepared: Prepared) -> Trained:
    """Return the chosen linear model retrained, same config, on training + validation rows.

    With a few hundred rows the validation split is too valuable to leave out of the final
    fit; a linear model trained to convergence needs no validation rows to stop on (measured
    on diabetes over 5 splits: R² 0.423 without the refit, 0.428 with it; RidgeCV 0.429).
    """
    merged = replace(prepared,
                     train_inputs=tuple(torch.cat([a, b]) for a, b in zip(prepared.train_inputs, prepared.val_inputs)),
                     train_y=torch.cat([prepared.train_y, prepared.val_y]))
    refit = train_candidate(best.run.config, merged, None, False, budget=Budget(best.run.config.train.time_limit))
    prepared.notes.append("the linear model was refit on training + validation rows "
                          "(so its validation metrics are optimistic)")
    return Trained(refit.run, refit.state, refit.seconds + best.seconds, best.best_epoch, best.best_val_loss)


def finish_run(best: Trained, trained: list[Trained], prepared: Prepared, selection_val: dict | None) -> None:
    """Fill the chosen run's metrics: test and validation scores, how training went, notes."""
    run, state = best.run, best.state
    run.assessment = run.assess(prepared.test_source) if prepared.test_source is not None else None
    run.metrics = {
        "task": prepared.task, "score": main_score_name(prepared.task), "scaletrain_version": __version__,
        "test": run.assessment.metrics if run.assessment else {},
        "val": run.evaluate(prepared.val_source) if len(prepared.val_y) else {},
        "train_seconds": round(sum(t.seconds for t in trained), 3), "epochs": len(run.history),
        "best_epoch": best.best_epoch,
        "stopped_by": "time limit" if state.time_limit and state.elapsed >= state.time_limit else
                      "early stopping" if len(run.history) < run.config.train.epochs else "epochs",
        "model": run.config.model.name, "parameters": sum(p.numel() for p in run.model.parameters()),
    }
    if not run.metrics["test"] and not run.metrics["val"] and len(prepared.train_y):
        run.metrics["train"] = training_metrics(run, prepared)
        prepared.notes.append("no validation or test rows: the metrics are on the training rows")
    w = distributed.world()
    if w.active:
        run.metrics["distributed"] = {"ranks": w.size, "restarts": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))}
    if selection_val is not None:
        run.metrics["val_before_refit"] = selection_val
    if len(trained) > 1:
        run.metrics["candidates"] = {t.run.config.model.name: t.best_val_loss for t in trained}
        prepared.notes.append("zero-config tried " + ", ".join(
            f"{name} (val loss {loss:.4f})" for name, loss in run.metrics["candidates"].items())
            + f" and kept {run.config.model.name}")
    run.metrics.update(data=prepared.summary, notes=prepared.notes)


def training_metrics(run: Run, prepared: Prepared) -> dict:
    """The task's metrics on the (encoded) training rows."""
    values, proba = run.predict_encoded(prepared.train_inputs)
    truth = prepared.train_y.numpy()
    if run.task == "regression":
        truth = decode_target(run.preprocess["target"], truth.astype("float64"))
    return compute_metrics(run.task, truth, values, proba)


def write_run(run: Run, out_dir: Path, name: str, sections: list[str] | None) -> None:
    """Write the run directory: the run's files, then its report."""
    run.save(out_dir)
    RunDir(out_dir).write_report(render_report(run, name, run.assessment, sections))


def render_report(run: Run, name: str, assessment, sections: list[str] | None = None) -> str:
    """Return report.html for a finished run."""
    m = run.metrics
    summary = {**m["data"], "model": f"{m['model']} ({m['parameters']:,} parameters)",
               "epochs": f"{m['epochs']} (best {m['best_epoch']}, stopped by {m['stopped_by']})",
               "train seconds": m["train_seconds"]}
    classes = run.classes
    per_class = (per_class_metrics(assessment.truth, assessment.predicted, classes)
                 if assessment is not None and classes else None)
    sections = list(sections or []) + run.modality.report_sections(run, assessment)
    return build_report(f"scaletrain run: {name}", summary, {k: m[k] for k in ("train", "val", "test") if m.get(k)},
                        run.history, run.task, assessment.truth if assessment else None,
                        assessment.predicted if assessment else None, classes, per_class, m["notes"], sections)
