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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from scaletrain.errors import ConfigError, ScaletrainError
from scaletrain.tune.space import SearchSpace, as_set

SEARCHES = ("grid", "random", "bayes")
DEFAULT_TRIALS = 20
EXPECTED_TRIALS = 8       # a time budget without --trials is shared as if among this many trials
RETRAIN_SHARE = 0.4       # of a time limit, kept for the best's final training when runs end on time
MIN_TRIAL_SECONDS = 10.0  # a trial's least time: shorter runs rank configurations by noise
FINISH_SECONDS = 5.0      # evaluating and writing DIR/best after the retrain


@dataclass
class Plan:
    """What every trial needs, as plain values: it crosses to worker processes as JSON."""

    data: str | None
    target: str | None
    search: str
    trials: int | None
    cv: int | None
    space: dict
    sets: list[str]
    config: dict
    seed: int
    trial_limit: float | None
    deadline: float | None    # time.time() after which no trial starts
    storage: str | None       # Optuna journal file, shared by the worker processes
    retrain_reserve: float = 0.0  # seconds kept after the search for the best's final training
    study: str = "scaletrain"
    prune: bool = True
    threads: int | None = None
    score: str = "accuracy"
    notes: list[str] = field(default_factory=list)


@dataclass
class TuneResult:
    leaderboard: pd.DataFrame
    best_params: dict
    best_score: float
    run: object | None        # the retrained best Run
    path: Path | None
    seconds: float


def tune(data, target: str | None = None, *, search: str = "bayes", trials: int | None = None,
         time_limit: str | float | None = None, cv: int | None = None, space: str | Path | dict | None = None,
         out: str | Path | None = None, config=None, sets: list[str] | None = None, workers: int | None = None,
         seed: int | None = None, prune: bool = True, verbose: bool = True, backend: str = "optuna") -> TuneResult:
    """Search the space, write DIR/leaderboard.csv and DIR/tune.json, retrain the best
    configuration into DIR/best (a normal run directory); return the result."""
    from scaletrain.config import make_config, parse_duration
    from scaletrain.data.sources import load_source

    started = time.time()
    if search not in SEARCHES:
        raise ConfigError(f"--search {search!r}: choose one of {', '.join(SEARCHES)}")
    if trials is not None and trials < 1:
        raise ConfigError("--trials must be at least 1")
    limit = parse_duration(time_limit)
    cfg = make_config(config.to_dict() if hasattr(config, "to_dict") else config, sets)
    seed = cfg.train.seed if seed is None else seed
    source = load_source(data)
    if source.kind not in ("table", "image"):
        raise ConfigError(f"tune works on tables and images held in memory; '{source.name}' is {source.kind} "
                          "(tune on a sample of it, then train on all of it with the best config)")
    if cv is not None and source.kind != "table":
        raise ConfigError("--cv works on tables; tune images with the holdout (leave out --cv)")
    searched = (space if isinstance(space, dict) else None)
    grid = SearchSpace(searched) if searched else (SearchSpace.from_file(space) if space else
                                                  SearchSpace.default(source.kind))
    if search == "grid":
        trials = min(trials or grid.grid_size(), grid.grid_size())
    elif trials is None and limit is None:
        trials = DEFAULT_TRIALS
    workers = _workers(workers, source, data, trials)
    cores = _cores()
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        if (out_dir / "leaderboard.csv").exists():
            raise ConfigError(f"'{out_dir}' already holds a search; choose another --out")
        out_dir.mkdir(parents=True, exist_ok=True)

    task_rows, test_rows = _holdout_for_cv(source, cfg, target, seed) if cv else (None, None)
    reserve, share = _budget(limit, source.kind == "image", trials)
    plan = Plan(data=str(data) if isinstance(data, (str, Path)) else None, target=target, search=search,
                trials=trials, cv=cv, space=grid.spec,
                sets=list(sets or []), config=cfg.to_dict(), seed=seed, trial_limit=share,
                deadline=None, storage=None, retrain_reserve=reserve, prune=prune,
                threads=max(1, cores // workers) if workers > 1 else None)
    if backend == "ray":
        from scaletrain.tune.ray_backend import search_with_ray

        rows, score_name, task = search_with_ray(plan, grid, source, task_rows, limit, started, verbose)
    elif backend == "optuna":
        rows, score_name, task = _search(plan, grid, source, task_rows, workers, limit, started, out_dir, verbose)
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
        from scaletrain.io import write_json, write_text

        write_text(out_dir / "leaderboard.csv", board.to_csv(index=False))
        run, path = _retrain(plan, source, task_rows, test_rows, best_params, limit,
                             started, out_dir, board, score_name, verbose)
        write_json(out_dir / "tune.json", {
            "search": search, "backend": backend, "trials": int((board["trial"] != "default").sum()),
            "cv": cv, "time_limit": limit, "seed": seed, "score": score_name, "task": task,
            "space": plan.space, "best": {"trial": str(best["trial"]), "params": best_params,
                                          "score": float(best["score"])},
            "test": run.metrics["test"] if run is not None else {},
            "seconds": round(time.time() - started, 2)})
    return TuneResult(board, best_params, float(best["score"]), run, path, time.time() - started)


def _budget(limit: float | None, image: bool, trials: int | None) -> tuple[float, float | None]:
    """Return (seconds kept for the best's final training, each trial's time limit).

    Image runs train until their time limit, so trials are short low-fidelity runs that rank
    the configurations and the best then trains for RETRAIN_SHARE of the limit (the
    multi-fidelity idea of successive halving). Table runs end by early stopping, so the
    retrain needs about what one trial took: the default, the trials and the retrain share
    the budget equally. A trial gets at least MIN_TRIAL_SECONDS; fewer trials run if the
    budget is short, and a budget without room for one is refused.
    """
    if limit is None:
        return 0.0, None
    reserve = RETRAIN_SHARE * limit if image else 0.0
    runs = (trials or EXPECTED_TRIALS) + (1 if image else 2)  # + the default (+ the retrain)
    least = MIN_TRIAL_SECONDS * (2 / (1 - RETRAIN_SHARE) if image else 3)
    if limit < least:
        raise ConfigError(f"--time-limit {limit:.0f}s leaves no room for a search (the default, one trial and the "
                          f"retrain need {least:.0f}s at {MIN_TRIAL_SECONDS:.0f}s a run); give a longer limit, or "
                          "train zero-config with `scaletrain train --time-limit`")
    return reserve, max((limit - reserve) / runs, MIN_TRIAL_SECONDS)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _workers(workers: int | None, source, data, trials: int | None) -> int:
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
    if source.kind != "table" or not isinstance(data, (str, Path)):
        return 1
    return max(1, min(_cores(), trials or _cores()))


def _holdout_for_cv(source, cfg, target: str | None, seed: int):
    """With --cv, cut the test rows off first (stratified, seeded); folds come from the rest."""
    from sklearn.model_selection import train_test_split

    from scaletrain.data.schema import find_target, infer_task

    frame = source.frame.reset_index(drop=True)
    column = find_target(frame, target or cfg.data.target, source.name)
    frame = frame[frame[column].notna()].reset_index(drop=True)
    if not cfg.data.test_fraction:
        return frame, None
    task = infer_task(frame[column], cfg.data.task)
    stratify = frame[column].astype(str) if task != "regression" else None
    rest, test = train_test_split(frame, test_size=cfg.data.test_fraction, random_state=seed, stratify=stratify)
    return rest.reset_index(drop=True), test.reset_index(drop=True)


# ---------------------------------------------------------------- one trial
def pruning_callback(trial):
    """Return a training callback that reports each epoch's validation score to the trial and
    stops the run when Optuna's pruner says the trial is worse than the median of the others."""
    from scaletrain.train.loop import Callback

    class PruneOnEpoch(Callback):
        def __init__(self):
            self.pruned, self.step = False, 0  # counted across runs: zero-config may train two models

        def on_epoch_end(self, state) -> None:
            score = state.val.get("val_score")
            if score is None or not math.isfinite(score):
                return
            trial.report(score, self.step)
            self.step += 1
            if trial.should_prune():
                self.pruned, state.stop = True, True

    return PruneOnEpoch()


def evaluate_config(plan: Plan, source, task_rows, params: dict, trial=None, time_limit: float | None = None
                    ) -> tuple[float, float, str, str]:
    """Fit (or cross-validate) the config with `params` set; return (score, std, score name,
    task). With an Optuna `trial`, intermediate scores are reported and a pruned run raises
    optuna.TrialPruned."""
    from scaletrain.api import fit
    from scaletrain.evaluate.metrics import main_score_name

    sets = plan.sets + [as_set(k, v) for k, v in params.items()]
    if plan.threads:
        sets.append(f"train.threads={plan.threads}")
    limit = time_limit if time_limit is not None else plan.trial_limit
    if plan.cv:
        from scaletrain.cv import cross_validate

        scores: list[float] = []
        name = {}

        def on_fold(i: int, metrics: dict) -> None:  # after each fold: prune on the running mean
            name.setdefault("score", "r2" if "r2" in metrics else "accuracy")
            scores.append(metrics[name["score"]])
            if trial is not None and plan.prune:
                trial.report(float(np.mean(scores)), i)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        result = cross_validate(task_rows, plan.target, k=plan.cv, config=plan.config, sets=sets,
                                seed=plan.seed, time_limit=None if limit is None else limit / plan.cv,
                                on_fold=on_fold)
        score_name = main_score_name(result["task"])
        return result["mean"][score_name], result["std"][score_name], score_name, result["task"]
    pruning = pruning_callback(trial) if trial is not None and plan.prune else None
    run = fit(source, plan.target, out=None, config=plan.config, sets=sets, seed=plan.seed, time_limit=limit,
              callbacks=[pruning] if pruning else None)
    if pruning is not None and pruning.pruned:
        raise optuna.TrialPruned()
    score_name = main_score_name(run.metrics["task"])
    val = run.metrics.get("val_before_refit") or run.metrics["val"]
    if score_name not in val:
        raise ConfigError("tuning needs validation rows to score trials on: set data.val_fraction above 0")
    return float(val[score_name]), float("nan"), score_name, run.metrics["task"]


def _objective(plan: Plan, grid: SearchSpace, source, task_rows):
    def objective(trial) -> float:
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
def make_sampler(plan: Plan, grid: SearchSpace, worker: int = 0):
    if plan.search == "grid":
        return optuna.samplers.GridSampler(grid.grid(), seed=plan.seed)
    if plan.search == "random":
        return optuna.samplers.RandomSampler(seed=plan.seed + worker)
    # TPE after a few random trials: enough to model where good values lie, few enough to
    # leave most of a small budget to the model's suggestions
    startup = max(3, min(10, (plan.trials or EXPECTED_TRIALS) // 3))
    return optuna.samplers.TPESampler(seed=plan.seed + worker, n_startup_trials=startup)


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


def _search(plan: Plan, grid: SearchSpace, source, task_rows, workers: int, limit: float | None, started: float,
            out_dir: Path | None, verbose: bool) -> tuple[list[dict], str, str]:
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    rows = [_default_row(plan, source, task_rows)]
    set_deadline(plan, started, limit, rows[0]["seconds"])
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
                rows += [_trial_row(t) for t in _study(plan, grid).get_trials(deepcopy=False)]
            finally:
                Path(journal).unlink(missing_ok=True)
                Path(str(journal) + ".lock").unlink(missing_ok=True)
        else:
            study = _study(plan, grid)
            study.optimize(_objective(plan, grid, source, task_rows), n_trials=None,
                           callbacks=_stop_rules(plan) + [show], catch=())
            rows += [_trial_row(t) for t in study.get_trials(deepcopy=False)]
    return rows, rows[0]["score_name"], rows[0]["task"]  # the default's: every trial shares them


def set_deadline(plan: Plan, started: float, limit: float | None, default_seconds: float) -> None:
    """No trial starts after plan.deadline: what is left then is the retrain's (its reserve,
    or as long as the default took, at most a trial's share) and writing the results."""
    if limit is not None:
        retrain = plan.retrain_reserve or min(plan.trial_limit, max(default_seconds, 1.0))
        plan.deadline = started + limit - retrain - FINISH_SECONDS


def _default_row(plan: Plan, source, task_rows) -> dict:
    started = time.time()
    score, std, name, task = evaluate_config(plan, source, task_rows, {})
    return {"trial": "default", "state": "COMPLETE", "score": score, "std": std,
            "seconds": round(time.time() - started, 3), "params": {}, "error": "",
            "score_name": name, "task": task}


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
    from scaletrain.data.sources import load_source
    from scaletrain.config import make_config

    plan = Plan(**json.loads(text))
    grid = SearchSpace(plan.space)
    source = load_source(plan.data)
    task_rows = None
    if plan.cv:
        task_rows, _ = _holdout_for_cv(source, make_config(plan.config), plan.target, plan.seed)
    study = _study(plan, grid, worker)
    study.optimize(_objective(plan, grid, source, task_rows), n_trials=None, callbacks=_stop_rules(plan))


# ---------------------------------------------------------------- the best, retrained
def _retrain(plan: Plan, source, task_rows, test_rows, params: dict, limit: float | None,
             started: float, out_dir: Path, board: pd.DataFrame, score_name: str, verbose: bool):
    """Train the best configuration once more into DIR/best, a normal run directory, with the
    leaderboard as a section of its report."""
    from scaletrain.api import fit
    from scaletrain.evaluate.report import leaderboard_section

    sets = plan.sets + [as_set(k, v) for k, v in params.items()]
    time_limit = None if limit is None else max(1.0, started + limit - time.time() - FINISH_SECONDS)
    if plan.cv:  # retrained on every row the folds came from, scored on the rows held out first
        data, test = task_rows, test_rows
    else:
        data, test = source, None
    section = leaderboard_section(board, score_name)
    run = fit(data, plan.target, test=test, out=out_dir / "best", config=plan.config, sets=sets, seed=plan.seed,
              time_limit=time_limit, verbose=verbose, report_sections=[section])
    return run, out_dir / "best"


if __name__ == "__main__":
    import sys

    worker_main(sys.argv[1], int(sys.argv[2]))
