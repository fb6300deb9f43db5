"""One trial of a search, the same under either backend: its plan, the config it trains (a
typed Config with the trial's values set), its score on validation rows, and pruning."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import optuna

from scaletrain.config import Config, build_config
from scaletrain.errors import ConfigError
from scaletrain.evaluate.metrics import main_score_name
from scaletrain.fitting.cv import cross_validate_config
from scaletrain.fitting.pipeline import FitOptions, fit_run
from scaletrain.tasks import task_of
from scaletrain.train.budget import EXPECTED_TRIALS, Budget
from scaletrain.train.loop import Callback
from scaletrain.tune.space import SearchSpace


@dataclass
class Plan:
    """What every trial needs, as plain values: it crosses to worker processes as JSON."""

    data: str | None
    target: str | None
    search: str
    trials: int | None
    cv: int | None
    space: dict
    config: dict              # the validated config every trial starts from
    seed: int
    trial_limit: float | None
    deadline: float | None    # time.time() after which no trial starts
    storage: str | None       # Optuna journal file, shared by the worker processes
    retrain_reserve: float = 0.0  # seconds kept after the search for the best's final training
    study: str = "scaletrain"
    prune: bool = True
    threads: int | None = None
    notes: list[str] = field(default_factory=list)

    def trial_config(self, params: dict, time_limit: float | None) -> Config:
        """The config of one trial: the plan's, with the trial's values, seed, threads and limit."""
        fixed = {"train.seed": self.seed, "train.time_limit": time_limit, "data.target": self.target,
                 "train.threads": self.threads}
        return build_config(self.config).with_values({**params, **{k: v for k, v in fixed.items() if v is not None}})


def holdout_for_cv(source, cfg: Config, target: str | None, seed: int):
    """With --cv, cut the test rows off first (stratified, seeded); folds come from the rest."""
    from sklearn.model_selection import train_test_split

    from scaletrain.data.schema import find_target
    from scaletrain.tasks.infer import infer_task

    frame = source.frame.reset_index(drop=True)
    column = find_target(frame, target or cfg.data.target, source.name)
    frame = frame[frame[column].notna()].reset_index(drop=True)
    if not cfg.data.test_fraction:
        return frame, None
    task = infer_task(frame[column], cfg.data.task)
    stratify = frame[column].astype(str) if task_of(task).classifies else None
    rest, test = train_test_split(frame, test_size=cfg.data.test_fraction, random_state=seed, stratify=stratify)
    return rest.reset_index(drop=True), test.reset_index(drop=True)


class PruneOnEpoch(Callback):
    """Reports each epoch's validation score to the trial and stops the run when Optuna's
    pruner says the trial is worse than the median of the others."""

    def __init__(self, trial):
        self.trial, self.pruned, self.step = trial, False, 0  # counted across runs: zero-config may train two

    def on_epoch_end(self, state) -> None:
        score = state.val.get("val_score")
        if score is None or not math.isfinite(score):
            return
        self.trial.report(score, self.step)
        self.step += 1
        if self.trial.should_prune():
            self.pruned, state.stop = True, True


def pruning_callback(trial) -> PruneOnEpoch:
    return PruneOnEpoch(trial)


def evaluate_config(plan: Plan, source, task_rows, params: dict, trial=None, time_limit: float | None = None
                    ) -> tuple[float, float, str, str]:
    """Fit (or cross-validate) the config with `params` set; return (score, std, score name,
    task). With an Optuna `trial`, intermediate scores are reported and a pruned run raises
    optuna.TrialPruned."""
    limit = time_limit if time_limit is not None else plan.trial_limit
    if plan.cv:
        return _cross_validated(plan, task_rows, params, trial, limit)
    pruning = pruning_callback(trial) if trial is not None and plan.prune else None
    run = fit_run(plan.trial_config(params, limit), source,
                  options=FitOptions(callbacks=[pruning] if pruning else None))
    if pruning is not None and pruning.pruned:
        raise optuna.TrialPruned()
    score_name = main_score_name(run.metrics["task"])
    val = run.metrics.get("val_before_refit") or run.metrics["val"]
    if score_name not in val:
        raise ConfigError("tuning needs validation rows to score trials on: set data.val_fraction above 0")
    return float(val[score_name]), float("nan"), score_name, run.metrics["task"]


def _cross_validated(plan: Plan, task_rows, params: dict, trial, limit: float | None):
    scores: list[float] = []
    name = {}

    def on_fold(i: int, metrics: dict) -> None:  # after each fold: prune on the running mean
        name.setdefault("score", "r2" if "r2" in metrics else "accuracy")
        scores.append(metrics[name["score"]])
        if trial is not None and plan.prune:
            trial.report(float(np.mean(scores)), i)
            if trial.should_prune():
                raise optuna.TrialPruned()

    config = plan.trial_config(params, None if limit is None else limit / plan.cv)
    result = cross_validate_config(task_rows, config, k=plan.cv, on_fold=on_fold)
    score_name = main_score_name(result["task"])
    return result["mean"][score_name], result["std"][score_name], score_name, result["task"]


def make_sampler(plan: Plan, grid: SearchSpace, worker: int = 0):
    if plan.search == "grid":
        return optuna.samplers.GridSampler(grid.grid(), seed=plan.seed)
    if plan.search == "random":
        return optuna.samplers.RandomSampler(seed=plan.seed + worker)
    # TPE after a few random trials: enough to model where good values lie, few enough to
    # leave most of a small budget to the model's suggestions
    startup = max(3, min(10, (plan.trials or EXPECTED_TRIALS) // 3))
    return optuna.samplers.TPESampler(seed=plan.seed + worker, n_startup_trials=startup)


def set_deadline(plan: Plan, budget: Budget, default_seconds: float) -> None:
    """No trial starts after plan.deadline: what is left then is the retrain's (its reserve,
    or as long as the default took, at most a trial's share) and writing the results."""
    if budget.limited:
        retrain = plan.retrain_reserve or min(plan.trial_limit, max(default_seconds, 1.0))
        plan.deadline = time.time() + budget.until_last_trial(retrain)


def default_row(plan: Plan, source, task_rows) -> dict:
    started = time.time()
    score, std, name, task = evaluate_config(plan, source, task_rows, {})
    return {"trial": "default", "state": "COMPLETE", "score": score, "std": std,
            "seconds": round(time.time() - started, 3), "params": {}, "error": "",
            "score_name": name, "task": task}
