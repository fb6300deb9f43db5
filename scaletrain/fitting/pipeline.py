"""One complete fit: data read and prepared, the recipe's candidates trained, one chosen (and
refit), evaluated, and the run directory written. `api.fit`, tune, cv, the estimators and the
benchmarks all call `fit_run`; nothing here imports from them."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from scaletrain.audit import audit_section, run_findings
from scaletrain.config import Config
from scaletrain.data.prepared import Prepared
from scaletrain.data.resample import resample
from scaletrain.errors import ConfigError
from scaletrain.evaluate.metrics import compute_metrics, main_score_name, per_class_metrics
from scaletrain.evaluate.report import build_report
from scaletrain.explain.report import trust_sections
from scaletrain.fitting.candidates import (
    Trained,
    blendable,
    blended,
    choose,
    inputs_note,
    label_of,
    refit_on_all_rows,
    refits,
    stopped_on_time,
    train_candidate,
)
from scaletrain.fitting.decisions import calibrate, calibration_on_test, decision_target, set_threshold
from scaletrain.fitting.folds import bagged, choose_by_cross_validation, cross_validates
from scaletrain.fitting.recipe import CONV_NETS, candidate_configs
from scaletrain.fitting.shifts import choose_test_shifts, settled
from scaletrain.modalities import load_source, load_test_source, modality, prepare
from scaletrain.parallel import distributed
from scaletrain.run import Run
from scaletrain.rundir import RunDir, default_out
from scaletrain.runlock import writing
from scaletrain.runtime import keep_freed_memory
from scaletrain.tasks import task_of
from scaletrain.train.assembly import process_group
from scaletrain.train.budget import Budget
from scaletrain.train.setup import seed_everything
from scaletrain.train.sizing import size_for_budget
from scaletrain.train.transfer import column_starts
from scaletrain.version import VERSION as __version__


@dataclass
class FitOptions:
    """How a fit runs, beside what it trains (the Config) and on what (the data)."""

    out: str | Path | None = None   # a run directory, "auto" for runs/<data>-<time>, None: none written
    verbose: bool = False
    resume: bool = False
    callbacks: list | None = None   # join the training loop's (a tuner's pruning)
    report_sections: list[str] | None = None  # HTML sections appended to report.html
    overwrite: bool = False         # out holds a run: replace it whole (else refused unless resuming)
    resume_or_start: bool = False   # resume, or start afresh where there is no checkpoint


def fit_run(config: Config, data, *, y=None, test=None, options: FitOptions | None = None,
            budget: Budget | None = None) -> Run:
    """Train on raw data with a validated config and return the Run (written to options.out).

    `budget` bounds the whole fit (default: the config's time limit, counted from now)."""
    options = options or FitOptions()
    budget = budget or Budget(config.train.time_limit)
    keep_freed_memory()
    if options.resume and options.out in (None, "auto"):
        raise ConfigError("resuming needs the run directory of the interrupted run: give --out DIR")
    with writing(options.out, options.resume, options.overwrite, options.resume_or_start), \
            process_group(config.train.device):
        return _fit(config, data, y, test, options, budget)


def _fit(cfg: Config, data, y, test, options: FitOptions, budget: Budget) -> Run:
    w = distributed.world()
    seed_everything(cfg.train.seed)
    with budget.phase("read"):
        source, prepared = load_and_prepare(cfg, data, y, test)
    out_dir = run_directory(options.out, source.name)
    with budget.phase("size"):
        candidates = plan_candidates(cfg, prepared, budget)
    with budget.phase("train"):
        trained = train_candidates(candidates, prepared, out_dir, options, budget)
    with budget.phase("choose"):
        best, chosen_by, ensemble, blend = pick(trained, prepared)
    prepared.note(budget_note(trained, budget))
    if cfg.train.precision == "auto" and best.run.config.train.precision == "bf16":
        prepared.note("trained in bf16 autocast (train.precision=auto: a model measured to train ~2x faster in bf16 on a CPU "
                      "with AMX tiles); predictions are computed in fp32, as the exported graph computes them")
    bagging = ensemble is not None and ensemble["kept"]
    refitting = refits(best, trained) and len(prepared.val_y) and not bagging
    with best.run.outputs_kept():  # every step below reads the validation rows' outputs of this one model
        with budget.phase("decide"):
            shifts, calibration, decision = decide(best.run, prepared, refitting, bagging)
        selection_val = None
        if refitting:
            with budget.phase("refit"):
                # a tuner compares runs on validation rows the refit has seen: keep the honest figure
                selection_val = best.run.evaluate(prepared.val_source)
                best = refit_on_all_rows(best, prepared)
                best.run.preprocess = best.run.preprocess | {"target": decision_target(best.run, decision)}
        if not w.main:  # rank 0 evaluates and writes the run directory
            return best.run
        with budget.phase("evaluate"):
            finish_run(best, trained, prepared, selection_val, chosen_by)
    measured = {"threshold" if decision and "threshold" in decision else "class_bias": decision, "ensemble": ensemble,
                "blend": blend, "test_shifts": shifts,
                "calibration": calibration and calibration | calibration_on_test(best.run)}
    best.run.metrics.update({k: v for k, v in measured.items() if v is not None}, seconds=budget.phases)
    if out_dir is not None:
        write_run(best.run, out_dir, source.name, options.report_sections)
    return best.run


def train_candidates(candidates: list[Config], prepared: Prepared, out_dir: Path | None, options: FitOptions,
                     budget: Budget) -> list[Trained]:
    """Train each candidate with its share of what is left of the limit (one progress bar and
    checkpoints per candidate, rank 0's bar alone)."""
    w = distributed.world()
    verbose = options.verbose and w.main
    resume = options.resume or (distributed.restarted() and options.out not in (None, "auto"))  # by the launcher
    trained = []
    for i, candidate in enumerate(candidates):
        checkpoints = out_dir / "checkpoints" if out_dir else None
        if checkpoints and len(candidates) > 1:
            checkpoints = checkpoints / label_of(candidate)
        share = budget.rest(len(candidates) - i)
        trained.append(train_candidate(candidate, prepared, checkpoints, verbose, resume, share, options.callbacks))
    return trained


def decide(run: Run, prepared: Prepared, refitting: bool, bagging: bool) -> tuple[dict | None, ...]:
    """The choices made on the validation rows, in order — test-time shifts, a temperature, the
    decision threshold — each stored with the run; return what each measured (None: not made).
    Rank 0 alone: under FSDP the other ranks hold shards, whose forward is a collective. A
    model to be refit is another model: a temperature fitted on this one would not be its own."""
    main = distributed.world().main
    shifts = None if refitting or not main else choose_test_shifts(run, prepared)
    calibration = None if refitting or not main else calibrate(run, prepared)
    run.config = run.config.with_values({  # the config says what the run is
        "model.test_shifts": ("on" if shifts["kept"] else "off") if shifts else settled(run.config.model.test_shifts),
        "train.calibration": "temperature" if calibration and calibration["kept"] else "none",
        "train.ensemble": "on" if bagging else "off",
        "train.blend": "on" if run.config.model.name == "blend" else "off"}).frozen()
    return shifts, calibration, set_threshold(run, prepared) if main else None


def load_and_prepare(cfg: Config, data, y, test) -> tuple:
    """The training source read and prepared (split, preprocessing fitted on training rows)."""
    size = (cfg.data.image_size, cfg.data.image_size) if cfg.data.image_size else None
    source = load_source(data, y, size=size, channels=cfg.data.channels)
    test_source = load_test_source(source, test) if test is not None else None
    starts = column_starts(cfg)  # model.encoders: earlier runs that start some columns' encoders
    if cfg.model.init_from and cfg.data.tokenizer is None:  # a pretrained encoder reads its own pieces
        cfg.data.tokenizer = cfg.model.init_from
    prepared = prepare(source, test_source, cfg.data, cfg.train.seed, starts)
    return source, resampled(prepared, cfg.data.resample, cfg.train.seed)


def resampled(prepared: Prepared, method: str, seed: int) -> Prepared:
    """Prepared data with its training rows (only) resampled to balanced classes."""
    if method == "none":
        return prepared
    if not task_of(prepared.task).classifies or prepared.shard_url is not None:
        raise ConfigError(f"data.resample={method} balances the classes of training rows held in memory; "
                          "it has no meaning for regression or streamed shards")
    before = prepared.class_counts().tolist()
    inputs, y = resample(prepared.train_inputs, prepared.train_y, method, seed)
    out = replace(prepared, train_inputs=inputs, train_y=y)
    out.note(f"training rows resampled ({method}): class counts {before} -> {out.class_counts().tolist()}; "
             "validation and test rows untouched")
    return out


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
        prepared.note(f"no validation rows to choose between {', '.join(c.model.name for c in candidates)}: "
                      f"trained {candidates[0].model.name}")
        candidates = candidates[:1]
    if w.active:
        candidates = [distributed.per_rank(c, cfg) for c in candidates]
    if cfg.train.fsdp:
        prepared.note(f"FSDP over {w.size} ranks: weights sharded, no mid-run checkpoints (the final model "
                      "is gathered)" if w.active else "train.fsdp needs several ranks; trained unsharded")
    if budget.limited and cfg.model.width is None:
        # a batch (and its rate) the user named, one shared over ranks or accumulated, or a
        # private one (its sampling rate is its privacy) is kept
        t = cfg.train
        grow = t.batch_size is None and t.lr is None and t.grad_accum == 1 and not w.active and t.privacy.epsilon is None
        candidates = [sized(c, prepared, budget, grow) for c in candidates]
        for c in candidates:  # each rank timed its own steps: rank 0's choice holds for all
            c.model.width = int(distributed.broadcast_text(str(c.model.width)))
    return candidates


def sized(c: Config, prepared: Prepared, budget: Budget, batch_may_grow: bool) -> Config:
    """A time-limited conv net's width: from the scaling probe where it is on (and the rows are
    in memory, one process), else the halving rule (after the batch is grown where it may be
    and this device runs a larger one much faster)."""
    from scaletrain.fitting.size_probe import probe_width  # scipy's fit: imported only where a probe runs

    probing = c.train.sizing == "probe" and c.model.name in CONV_NETS and task_of(prepared.task).classifies
    if probing and prepared.shard_url is None and not distributed.world().active:
        probed, prepared.measured["size_probe"] = probe_width(c, prepared, budget)
        if prepared.measured["size_probe"]["ran"]:
            return probed
        prepared.note(f"no scaling probe: {prepared.measured['size_probe']['why']}; width by the epochs rule")
    return size_for_budget(c, prepared, budget, batch_may_grow)


def pick(trained: list[Trained], prepared: Prepared) -> tuple[Trained, dict | None, dict | None, dict | None]:
    """The candidate to keep (blended with the others, or bagged, where that pays), the
    cross-validation results where they chose it, what bagging measured and what blending did."""
    if not cross_validates(trained, prepared):
        if trained[0].run.config.train.ensemble == "on":
            prepared.note("train.ensemble=on bags fold models of small in-memory tables (under 2,000 rows, "
                          "one process, no time limit): a single model was trained")
        best = choose(trained)
        best, blend = blended(best, blendable(best, trained), prepared)
        return best, None, None, blend
    best, results, members, held_out = choose_by_cross_validation(trained, prepared)
    prepared.note("zero-config compared " + ", ".join(
        f"{name} (cross-validated loss {r['loss']:.4f} ± {r['loss_std']:.4f}, score {r['score']:.4f} ± {r['score_std']:.4f})"
        for name, r in results.items()) + f" over {next(iter(results.values()))['folds']} folds of the training rows "
        f"and kept {label_of(best.run.config)}")
    summary = {name: {k: v for k, v in r.items() if k not in ("fold_losses", "fold_rows")} for name, r in results.items()}
    ensemble, mode = None, best.run.config.train.ensemble
    best, blend = blended(best, trained, prepared, held_out) if mode != "on" else (best, None)
    # a refit linear model is convex and sees every row: its bagged average is about itself, on fewer rows
    if best.run.config.model.name in ("boosted", "blend"):  # ensembles already; boosted fold models differ in shape
        if mode == "on":
            prepared.note("train.ensemble=on bags networks; the boosted trees chosen are an ensemble already")
    elif mode == "on" or (mode == "auto" and not refits(best, trained)):
        best, ensemble = bagged(best, members, results[label_of(best.run.config)], prepared)
    return best, summary, ensemble, blend


def finish_run(best: Trained, trained: list[Trained], prepared: Prepared, selection_val: dict | None,
               chosen_by: dict | None = None) -> None:
    """Fill the chosen run's metrics: test and validation scores, how training went, notes."""
    run, state = best.run, best.state
    run.assessment = run.assess(prepared.test_source) if prepared.test_source is not None else None
    run.background = modality(prepared.kind).background(prepared, run.config.train.seed)
    run.metrics = {
        "task": prepared.task, "score": main_score_name(prepared.task), "scaletrain_version": __version__,
        "test": run.assessment.metrics if run.assessment else {},
        "val": run.evaluate(prepared.val_source) if len(prepared.val_y) else {},
        "train_seconds": round(sum(t.seconds for t in trained), 3), "epochs": len(run.history),
        "best_epoch": best.best_epoch,
        "stopped_by": "convergence" if run.config.train.optimizer == "lbfgs" else
                      "time limit" if stopped_on_time(best) else
                      "early stopping" if len(run.history) < run.config.train.epochs else "epochs",
        "model": run.config.model.name, "parameters": sum(p.numel() for p in run.model.parameters()),
    }
    if not run.metrics["test"] and not run.metrics["val"] and len(prepared.train_y):
        run.metrics["train"] = training_metrics(run, prepared)
        prepared.note("no validation or test rows: the metrics are on the training rows")
    if getattr(state, "privacy", None):
        from scaletrain.train.private import privacy_note

        run.metrics["privacy"] = state.privacy
        prepared.note(privacy_note(state.privacy, run.config.data.preprocess_from))
    w = distributed.world()
    if w.active:
        run.metrics["distributed"] = {"ranks": w.size, "restarts": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))}
    if selection_val is not None:
        run.metrics["val_before_refit"] = selection_val
    if chosen_by is not None:
        run.metrics["candidates_cv"] = chosen_by
    if len(trained) > 1:
        run.metrics["candidates"] = {label_of(t.run.config): t.best_val_loss for t in trained}
    if len(trained) > 1 and chosen_by is None:
        prepared.note("zero-config tried " + ", ".join(map(candidate_summary, trained))
                      + f" and kept {label_of(run.config)}")
    if any(t.run.config.model.inputs != "all" for t in trained):
        prepared.note(inputs_note(trained, run))
    run.metrics.update(prepared.measured)
    run.metrics.update(data=prepared.summary, notes=prepared.notes, audit=run_findings(prepared, run.assessment,
                                                                                       run.classes))


def candidate_summary(t: Trained) -> str:
    """One candidate as the notes name it: its best validation loss and score, its seconds."""
    scores = [row["val_score"] for row in t.run.history if "val_score" in row]
    score = f", {'R²' if t.run.task == 'regression' else 'accuracy'} {max(scores):.4f}" if scores else ""
    return f"{label_of(t.run.config)} (val loss {t.best_val_loss:.4f}{score}, {t.seconds:.0f}s)"


def budget_note(trained: list[Trained], budget: Budget) -> str | None:
    """Why a time-limited run ended well before its limit (under half of it): every candidate
    finished by itself (converged, stopped early, ran its epochs); else None. A candidate ended
    by its time share did not finish early: the rest of the limit was kept for what follows."""
    if not budget.limited or budget.elapsed() >= budget.limit / 2 or any(map(stopped_on_time, trained)):
        return None
    why = {"lbfgs": "solved to convergence"}
    stops = ", ".join(f"{label_of(t.run.config)} {why.get(t.run.config.train.optimizer, stop_reason(t))}" for t in trained)
    return (f"the run took {budget.elapsed():.0f}s of its {budget.limit:.0f}s limit: every candidate finished early "
            f"({stops}); nothing more is tried on these data (see `scaletrain tune` to search further)")


def stop_reason(t: Trained) -> str:
    epochs = t.run.config.train.epochs
    return f"stopped early at epoch {len(t.run.history)} of {epochs} (validation loss no longer improving)" \
        if len(t.run.history) < epochs else f"ran its {epochs} epochs"


def training_metrics(run: Run, prepared: Prepared) -> dict:
    """The task's metrics on the (encoded) training rows."""
    values, proba = run.predict_encoded(prepared.train_inputs)
    truth = task_of(run.task).truth(run.preprocess["target"], prepared.train_y.numpy())
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
    if m.get("seconds"):  # where the command's time went (writing this report is not in it)
        summary["seconds by phase"] = " · ".join(f"{name} {seconds:.1f}" for name, seconds in m["seconds"].items())
    if p := m.get("privacy"):
        summary["privacy (DP-SGD)"] = f"ε = {p['epsilon']:.3g} spent of {p['target_epsilon']:g}, δ = {p['delta']:.2g}"
    classes = run.classes
    per_class = (per_class_metrics(assessment.truth, assessment.predicted, classes)
                 if assessment is not None and classes else None)
    sections = (list(sections or []) + run.modality.report_sections(run, assessment) + trust_sections(run, assessment)
                + ([audit_section(m["audit"])] if "audit" in m else []))
    return build_report(f"scaletrain run: {name}", summary, {k: m[k] for k in ("train", "val", "test") if m.get(k)},
                        run.history, run.task, assessment.truth if assessment else None,
                        assessment.predicted if assessment else None, classes, per_class, m["notes"], sections)
