"""`scaletrain tune`: hyperparameter search with Optuna, inside the user's time budget.

Every trial is a complete `fit` (or a k-fold cross-validation) of the config with the trial's
values set, scored on validation rows, never on test rows: with a holdout, all trials share the
seeded train/validation/test split, so they are compared on the same validation rows and the
test rows are seen once, by the retrained best configuration. With --cv the test rows are split
off first and the folds are cut from the rest.

The zero-config run is always the search's first entry (leaderboard row "default"): a search
then never ends worse, on validation, than not searching.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from scaletrain.config import Config, build_config, parse_duration
from scaletrain.errors import ConfigError, ScaletrainError
from scaletrain.fitting.pipeline import FitOptions, fit_run
from scaletrain.modalities import load_source, modality
from scaletrain.rundir import RunDir
from scaletrain.runlock import run_lock
from scaletrain.runtime import cores
from scaletrain.train.budget import Budget
from scaletrain.tune.space import SearchSpace
from scaletrain.tune.trials import Plan, default_row, evaluate_config, holdout_for_cv, make_sampler, set_deadline

SEARCHES = ("grid", "random", "bayes")
DEFAULT_TRIALS = 20


@dataclass
class TuneResult:
    leaderboard: pd.DataFrame
    best_params: dict
    best_score: float
    run: object | None        # the retrained best Run
    path: Path | None
    seconds: float


def tune(data, target: str | None = None, *, config: Config | None = None, search: str = "bayes",
         trials: int | None = None, time_limit: str | float | None = None, cv: int | None = None,
         space: str | Path | dict | None = None, out: str | Path | None = None, workers: int | None = None,
         seed: int | None = None, prune: bool = True, verbose: bool = True, backend: str = "optuna") -> TuneResult:
    """Search the space, write DIR/leaderboard.csv and DIR/tune.json, retrain the best
    configuration into DIR/best (a normal run directory); return the result. DIR is locked for
    the search."""
    with ExitStack() as held:  # one writer of OUT at a time
        if out is not None:
            held.enter_context(run_lock(out))
        budget = Budget(parse_duration(time_limit))
        started = time.time()
        cfg = config or Config()
        source = load_source(data)
        plan, grid, workers = make_plan(data, source, target, cfg, search, trials, cv, space, workers, seed, prune,
                                        budget)
        out_dir = Path(out) if out is not None else None
        if out_dir is not None:
            if (out_dir / "leaderboard.csv").exists():
                raise ConfigError(f"'{out_dir}' already holds a search; choose another --out")
            out_dir.mkdir(parents=True, exist_ok=True)
        task_rows, test_rows = holdout_for_cv(source, cfg, target, plan.seed) if cv else (None, None)
        if backend == "ray":
            from scaletrain.tune.ray_backend import search_with_ray

            rows, score_name, task = search_with_ray(plan, grid, source, task_rows, budget, verbose)
        elif backend == "optuna":
            rows, score_name, task = _search(plan, grid, source, task_rows, workers, budget, out_dir, verbose)
        else:
            raise ConfigError(f"--backend {backend!r}: choose optuna or ray")
        board = leaderboard(rows)
        board.attrs["score"] = score_name
        done = board[board["state"] == "COMPLETE"]
        if done.empty:
            raise ScaletrainError("no trial finished: every one failed or was pruned; see the leaderboard's "
                                  "error column" + (f" in {out_dir / 'leaderboard.csv'}" if out_dir else ""))
        best = done.iloc[0]
        best_params = next(row["params"] for row in rows if row["trial"] == best["trial"])
        run, path = None, None
        if out_dir is not None:
            RunDir(out_dir).write_leaderboard(board.to_csv(index=False))
            run, path = _retrain(plan, source, task_rows, test_rows, best_params, budget, out_dir, board, score_name,
                                 verbose)
            RunDir(out_dir).write_tune({
                "search": search, "backend": backend, "trials": int((board["trial"] != "default").sum()),
                "cv": cv, "time_limit": budget.limit, "seed": plan.seed, "score": score_name, "task": task,
                "space": plan.space, "best": {"trial": str(best["trial"]), "params": best_params,
                                              "score": float(best["score"])},
                "test": run.metrics["test"], "seconds": round(time.time() - started, 2)})
        return TuneResult(board, best_params, float(best["score"]), run, path, time.time() - started)


def make_plan(data, source, target, cfg: Config, search: str, trials: int | None, cv: int | None, space,
              workers: int | None, seed: int | None, prune: bool, budget: Budget) -> tuple[Plan, SearchSpace, int]:
    """Check the search's options against the data and return (plan, space, worker processes)."""
    if search not in SEARCHES:
        raise ConfigError(f"--search {search!r}: choose one of {', '.join(SEARCHES)}")
    if trials is not None and trials < 1:
        raise ConfigError("--trials must be at least 1")
    if source.streamed:
        raise ConfigError(f"tune works on data held in memory; '{source.name}' is a shard directory "
                          "(tune on a sample of it, then train on all of it with the best config)")
    m = modality(source.kind)
    if cv is not None and not m.cross_validates:
        raise ConfigError(f"--cv works on tables; tune {source.kind} data with the holdout (leave out --cv)")
    grid = SearchSpace(space) if isinstance(space, dict) else (SearchSpace.from_file(space) if space else
                                                               SearchSpace.default(m.search_space))
    if search == "grid":
        trials = min(trials or grid.grid_size(), grid.grid_size())
    elif trials is None and not budget.limited:
        trials = DEFAULT_TRIALS
    workers = _workers(workers, m.parallel_trials, data, trials)
    if budget.limited and budget.limit < Budget.least_search_seconds(m.ends_on_time):
        least = Budget.least_search_seconds(m.ends_on_time)
        raise ConfigError(f"--time-limit {budget.limit:.0f}s leaves no room for a search (the default, one trial and "
                          f"the retrain need {least:.0f}s); give a longer limit, or train zero-config with "
                          "`scaletrain train --time-limit`")
    reserve, share = budget.search_plan(trials, m.ends_on_time)
    plan = Plan(data=str(data) if isinstance(data, (str, Path)) else None, target=target, search=search,
                trials=trials, cv=cv, space=grid.spec, config=cfg.to_dict(),
                seed=cfg.train.seed if seed is None else seed, trial_limit=share, deadline=None, storage=None,
                retrain_reserve=reserve, prune=prune, threads=max(1, cores() // workers) if workers > 1 else None)
    return plan, grid, workers


def _workers(workers: int | None, parallel: bool, data, trials: int | None) -> int:
    """Trials run in parallel processes on tables given as a path: a small MLP uses one core
    well, so N processes of one thread finish N trials in about the time of one. Images run
    one trial at a time, their convolutions already spread over every core."""
    if workers is not None:
        if workers < 1:
            raise ConfigError("--workers must be at least 1")
        if workers > 1 and not isinstance(data, (str, Path)):
            raise ConfigError("parallel trials read the data from its path: give a file, not an in-memory "
                              "table, or use workers=1")
        return workers
    if not parallel or not isinstance(data, (str, Path)):
        return 1
    return max(1, min(cores(), trials or cores()))


def _objective(plan: Plan, grid: SearchSpace, source, task_rows):
    def objective(trial) -> float:
        if plan.trials and trial.number >= plan.trials:  # a parallel worker's extra start: no work, not listed
            trial.study.stop()
            return float("nan")
        params = grid.suggest(trial)
        started = time.time()
        limit = plan.trial_limit
        if plan.deadline is not None and limit is not None:
            limit = max(1.0, min(limit, plan.deadline - started))
        try:
            score, std, _, _ = evaluate_config(plan, source, task_rows, params, trial, limit)
        except ScaletrainError as exc:  # a diverging lr or a refused value fails this trial, not the search
            trial.set_user_attr("error", str(exc).splitlines()[0][:300])
            return float("nan")
        finally:
            trial.set_user_attr("seconds", round(time.time() - started, 3))
        trial.set_user_attr("std", std)
        return score
    return objective


# ---------------------------------------------------------------- the search
def make_pruner(plan: Plan):
    if not plan.prune:
        return optuna.pruners.NopPruner()
    # Median rule: stop a trial whose score at a step is below the median of earlier trials
    # at that step, once 3 trials have finished; a holdout run is judged from its 5th epoch
    # on (first epochs are noisy), cross-validation from its first fold.
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0 if plan.cv else 4)


def _study(plan: Plan, grid: SearchSpace, worker: int = 0):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if plan.storage:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(plan.storage))
    return optuna.create_study(study_name=plan.study, storage=storage, load_if_exists=True, direction="maximize",
                               sampler=make_sampler(plan, grid, worker), pruner=make_pruner(plan))


def _stop_rules(plan: Plan):
    """Optuna callbacks: stop after the planned trial count, or when the next trial would
    not finish before the deadline."""
    from optuna.study import MaxTrialsCallback

    rules = []
    if plan.trials:
        rules.append(MaxTrialsCallback(plan.trials, states=None))
    if plan.deadline is not None:
        def deadline(study, trial) -> None:
            longest = max((t.user_attrs.get("seconds", 0.0) for t in study.get_trials(deepcopy=False)), default=0.0)
            if time.time() + min(longest, plan.trial_limit or longest) > plan.deadline:
                study.stop()
        rules.append(deadline)
    return rules


def _search(plan: Plan, grid: SearchSpace, source, task_rows, workers: int, budget: Budget,
            out_dir: Path | None, verbose: bool) -> tuple[list[dict], str, str]:
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    rows = [default_row(plan, source, task_rows)]
    set_deadline(plan, budget, rows[0]["seconds"])
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), disable=not verbose,
                  transient=True) as progress:
        bar = progress.add_task("tuning")

        def show(study, trial) -> None:
            done = [t for t in study.get_trials(deepcopy=False) if t.value is not None and math.isfinite(t.value)]
            best = max([t.value for t in done] + [rows[0]["score"]])
            progress.update(bar, description=f"tuning: trial {trial.number + 1}"
                            f"{'/' + str(plan.trials) if plan.trials else ''} · best {best:.4f}")

        if workers > 1:
            journal = (out_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / f".optuna-{os.getpid()}.jsonl"
            plan.storage = str(journal)
            try:
                _run_workers(plan, workers, progress, bar)
                # Optuna's trial cap is checked as each trial ends, so parallel workers can start
                # one more each; the storage numbers trials in order: the planned ones come first
                rows += [_trial_row(t) for t in _study(plan, grid).get_trials(deepcopy=False)
                         if not plan.trials or t.number < plan.trials]
            finally:
                Path(journal).unlink(missing_ok=True)
                Path(str(journal) + ".lock").unlink(missing_ok=True)
        else:
            study = _study(plan, grid)
            study.optimize(_objective(plan, grid, source, task_rows), n_trials=None,
                           callbacks=_stop_rules(plan) + [show], catch=())
            rows += [_trial_row(t) for t in study.get_trials(deepcopy=False)]
    return rows, rows[0]["score_name"], rows[0]["task"]  # the default's: every trial shares them


def _trial_row(trial) -> dict:
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else float("nan")
    state = trial.state.name if not (trial.state.name == "COMPLETE" and math.isnan(value)) else "FAIL"
    if state == "PRUNED" and trial.intermediate_values:  # the last score it reached
        value = trial.intermediate_values[max(trial.intermediate_values)]
    return {"trial": str(trial.number), "state": state, "score": value,
            "std": trial.user_attrs.get("std", float("nan")), "seconds": trial.user_attrs.get("seconds", float("nan")),
            "params": trial.params, "error": trial.user_attrs.get("error", "")}


def leaderboard(rows: list[dict]) -> pd.DataFrame:
    """One row per trial (and the default): rank, trial, state, score, std, seconds, error,
    then one column per searched key. Finished trials best first, then pruned, then failed."""
    order = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2, "RUNNING": 3}
    keys = list(dict.fromkeys(k for row in rows for k in row["params"]))
    frame = pd.DataFrame([{**{k: row[k] for k in ("trial", "state", "score", "std", "seconds", "error")},
                           **{key: row["params"].get(key) for key in keys}} for row in rows])
    for key in keys:  # whole numbers stay whole beside the default's empty cells
        values = [row["params"][key] for row in rows if key in row["params"]]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            frame[key] = frame[key].astype("Int64")
    frame["_order"] = frame["state"].map(order).fillna(4)
    frame = frame.sort_values(["_order", "score"], ascending=[True, False], kind="stable", na_position="last")
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame.drop(columns="_order").reset_index(drop=True)


def params_of(board: pd.DataFrame, index: int) -> dict:
    """Return the searched values of one leaderboard row (none for the default)."""
    fixed = {"rank", "trial", "state", "score", "std", "seconds", "error"}
    row = board.iloc[index]
    return {k: _plain(row[k]) for k in board.columns if k not in fixed and not _missing(row[k])}


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------- parallel trials
def _run_workers(plan: Plan, workers: int, progress, bar) -> None:
    """Start `workers` processes (`python -m scaletrain.tune.search PLAN WORKER`) that share the
    study through Optuna's journal file; a fresh interpreter each, so nothing depends on how
    the caller's script is written, and the plan crosses as JSON."""
    import subprocess
    import sys

    text = json.dumps(plan.__dict__)
    processes = [subprocess.Popen([sys.executable, "-m", "scaletrain.tune.search", text, str(i)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(workers)]
    errors = []
    try:
        for process in processes:
            while process.poll() is None:
                time.sleep(0.5)
                progress.update(bar, description=f"tuning in {workers} processes")
            if process.returncode:
                errors.append(process.stderr.read().strip().splitlines()[-1:] or [f"exit {process.returncode}"])
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait()
    if errors:
        raise ScaletrainError(f"{len(errors)} tuning worker process(es) failed: {errors[0][0]}")


def worker_main(text: str, worker: int) -> None:
    """A worker process: load the data itself and run trials until the study's rules stop it."""
    plan = Plan(**json.loads(text))
    grid = SearchSpace(plan.space)
    source = load_source(plan.data)
    task_rows = None
    if plan.cv:
        task_rows, _ = holdout_for_cv(source, build_config(plan.config), plan.target, plan.seed)
    study = _study(plan, grid, worker)
    study.optimize(_objective(plan, grid, source, task_rows), n_trials=None, callbacks=_stop_rules(plan))


# ---------------------------------------------------------------- the best, retrained
def _retrain(plan: Plan, source, task_rows, test_rows, params: dict, budget: Budget, out_dir: Path,
             board: pd.DataFrame, score_name: str, verbose: bool):
    """Train the best configuration once more into DIR/best, a normal run directory, with the
    leaderboard as a section of its report."""
    from scaletrain.evaluate.report import leaderboard_section

    config = plan.trial_config(params, budget.retrain_limit() if budget.limited else None)
    if plan.cv:  # retrained on every row the folds came from, scored on the rows held out first
        data, test = task_rows, test_rows
    else:
        data, test = source, None
    section = leaderboard_section(board, score_name)
    run = fit_run(config, data, test=test, options=FitOptions(out_dir / "best", verbose, report_sections=[section]))
    return run, out_dir / "best"


if __name__ == "__main__":
    import sys

    worker_main(sys.argv[1], int(sys.argv[2]))
