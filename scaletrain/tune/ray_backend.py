"""`tune --backend ray`: the same search through Ray Tune, on a Ray cluster already running.

The trials are the same as the local backend's (evaluate_config, the same search space and
Optuna sampler, through Ray's OptunaSearch); Ray places them on the cluster's CPUs and its
median stopping rule prunes trials from the per-epoch scores they report. Ray's own
experiment files (which it pickles) live in a temporary folder that is removed afterwards;
what scaletrain keeps is the leaderboard, tune.json and the retrained best run.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from scaletrain.config import build_config
from scaletrain.errors import ConfigError, ScaletrainError
from scaletrain.modalities import load_source
from scaletrain.parallel.cluster import connect
from scaletrain.train.budget import Budget
from scaletrain.tune.space import SearchSpace
from scaletrain.tune.trials import Plan, default_row, evaluate_config, holdout_for_cv, make_sampler, set_deadline


class _RayTrial:
    """What evaluate_config expects of an Optuna trial, speaking to Ray Tune: scores go to
    tune.report, and stopping is Ray's scheduler's call (it ends the process)."""

    def report(self, value: float, step: int) -> None:
        from ray import tune

        tune.report({"score": float(value), "final": False})

    def should_prune(self) -> bool:
        return False


class _DrawOn:
    """Define-by-run space for OptunaSearch: draws the values on the trial, fixes nothing else.
    A module-level class because Ray saves its searcher's state with pickle."""

    def __init__(self, spec: dict):
        self.spec = spec

    def __call__(self, trial) -> None:
        SearchSpace(self.spec).suggest(trial)


def _trainable(plan_text: str):
    def run_trial(params: dict) -> None:
        import json

        from ray import tune

        plan = Plan(**json.loads(plan_text))
        source = load_source(plan.data)
        task_rows = holdout_for_cv(source, build_config(plan.config), plan.target, plan.seed)[0] if plan.cv else None
        started = time.time()
        limit = plan.trial_limit
        if plan.deadline is not None and limit is not None:
            limit = max(1.0, min(limit, plan.deadline - started))
        try:
            score, std, name, task = evaluate_config(plan, source, task_rows, params, _RayTrial(), limit)
        except ScaletrainError as exc:
            tune.report({"score": float("nan"), "final": True, "error": str(exc).splitlines()[0][:300],
                         "seconds": time.time() - started})
            return
        tune.report({"score": score, "std": std, "final": True, "seconds": time.time() - started,
                     "score_name": name, "task": task})
    return run_trial


def search_with_ray(plan, grid, source, task_rows, budget: Budget, verbose: bool) -> tuple[list[dict], str, str]:
    import json

    from ray import tune
    from ray.tune.schedulers import FIFOScheduler, MedianStoppingRule
    from ray.tune.search.optuna import OptunaSearch

    if plan.data is None:
        raise ConfigError("--backend ray reads the data on the cluster's workers: give a path, not an in-memory table")
    if plan.data and not Path(plan.data).exists() and "://" not in plan.data:
        raise ConfigError(f"'{plan.data}' does not exist")
    plan.data = str(Path(plan.data).resolve()) if "://" not in plan.data else plan.data
    connect()
    rows = [default_row(plan, source, task_rows)]
    seconds = None
    if budget.limited:
        set_deadline(plan, budget, rows[0]["seconds"])
        seconds = max(1.0, plan.deadline - time.time())
    threads = plan.threads or 1
    plan.threads = threads
    searcher = OptunaSearch(space=_DrawOn(grid.spec), metric="score", mode="max", sampler=make_sampler(plan, grid))
    # Ray's median rule, the same test as the local backend's pruner: after 5 reports, stop
    # a trial below the median of the others at that point
    scheduler = (MedianStoppingRule(time_attr="training_iteration", grace_period=5, min_samples_required=3)
                 if plan.prune else FIFOScheduler())
    storage = tempfile.mkdtemp(prefix="scaletrain-ray-")
    try:
        # reuse_actors: a trial runs in the process the one before it used, not a fresh actor that
        # imports torch and scaletrain again (2 trials on a local cluster: 27.1-27.8 -> 16.4-18.0 s)
        tuner = tune.Tuner(
            tune.with_resources(_trainable(json.dumps(plan.__dict__)), {"cpu": threads}),
            tune_config=tune.TuneConfig(metric="score", mode="max", search_alg=searcher, scheduler=scheduler,
                                        num_samples=plan.trials or -1, time_budget_s=seconds, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name="scaletrain", verbose=1 if verbose else 0))
        results = tuner.fit()
        for number, result in enumerate(results):
            rows.append(_row(number, result, grid))
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return rows, rows[0]["score_name"], rows[0]["task"]


def _row(number: int, result, grid) -> dict:
    metrics = result.metrics or {}
    params = {p.key: result.config.get(p.key) for p in grid.params if p.key in (result.config or {})}
    final = metrics.get("final", False)
    error = metrics.get("error", "") or (str(result.error).splitlines()[0][:300] if result.error else "")
    state = "FAIL" if error else ("COMPLETE" if final else "PRUNED")
    return {"trial": str(number), "state": state, "score": metrics.get("score", float("nan")),
            "std": metrics.get("std", float("nan")), "seconds": round(metrics.get("time_total_s", 0.0), 3),
            "params": params, "error": error}
