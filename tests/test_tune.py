"""`scaletrain tune`: grids enumerated exactly, seeded samplers, pruning that stops runs,
one leaderboard row per trial, the best configuration retrained as a run directory."""
import itertools
import math

import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from typer.testing import CliRunner

from scaletrain.api import fit, tune
from scaletrain.cli import app
from scaletrain.errors import ConfigError
from scaletrain.tune.space import SearchSpace
from scaletrain.tune.trials import pruning_callback

FIXED = ["train.epochs=4"]


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    return load_iris(as_frame=True).frame


def _trials(board: pd.DataFrame) -> pd.DataFrame:
    return board[board["trial"] != "default"]


def test_grid_search_runs_exactly_every_point_of_the_grid(iris):
    space = {"train.lr": [0.003, 0.03], "model.width": [8, 16], "model.name": ["mlp"]}
    result = tune(iris, "target", search="grid", space=space, sets=FIXED, prune=False, verbose=False)
    trials = _trials(result.leaderboard)
    points = sorted(zip(trials["train.lr"], trials["model.width"]))
    assert points == sorted(itertools.product([0.003, 0.03], [8, 16]))  # each point once, none missing
    assert (trials["state"] == "COMPLETE").all()


@pytest.mark.parametrize("search", ["random", "bayes"])
def test_random_and_bayes_run_the_trial_count_and_repeat_with_the_seed(iris, search):
    space = {"train.lr": {"low": 1e-3, "high": 0.1, "log": True}, "model.width": [8, 16, 32], "model.name": ["mlp"]}

    def drawn(seed):
        board = tune(iris, "target", search=search, trials=4, space=space, sets=FIXED, seed=seed, prune=False,
                     verbose=False).leaderboard
        trials = _trials(board).sort_values("trial")
        assert len(trials) == 4
        return list(zip(trials["train.lr"], trials["model.width"]))

    first = drawn(1)
    assert drawn(1) == first
    assert drawn(2) != first


def test_the_pruning_callback_stops_a_run_that_trails_the_median(iris):
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    for epoch in range(10):
        good.report(0.95, epoch)
    study.tell(good, 0.95)
    trial = study.ask()
    callback = pruning_callback(trial)
    run = fit(iris, "target", out=None, epochs=10, lr=1e-7, model="mlp", callbacks=[callback])
    assert callback.pruned
    assert len(run.history) == 1  # stopped after the first epoch it was judged on
    assert trial.number in {t.number for t in study.trials}


def test_a_search_prunes_poor_trials_and_keeps_their_last_score(iris):
    space = {"train.lr": {"low": 1e-7, "high": 0.1, "log": True}, "model.name": ["mlp"]}
    board = tune(iris, "target", search="random", trials=8, space=space, sets=["train.epochs=8"], seed=0,
                 verbose=False).leaderboard
    pruned = board[board["state"] == "PRUNED"]
    assert len(pruned) >= 1
    assert pruned["score"].notna().all()
    assert pruned["score"].max() <= board[board["state"] == "COMPLETE"]["score"].max()


def test_leaderboard_has_one_row_per_trial_and_the_best_is_retrained(tmp_path):
    frame = load_breast_cancer(as_frame=True).frame.sample(240, random_state=0)
    data = tmp_path / "bc.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "search"
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {low: 0.001, high: 0.03, log: true}\nmodel.name: [mlp]\n")
    result = CliRunner().invoke(app, ["tune", str(data), "--target", "target", "--trials", "3", "--cv", "3",
                                      "--space", str(space), "--out", str(out), "--workers", "2",
                                      "--set", "train.epochs=5", "--quiet"])
    assert result.exit_code == 0, result.output
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 3 + 1 and board["trial"].tolist().count("default") == 1
    assert sorted(board["trial"]) == sorted(["default", "0", "1", "2"])
    assert board.loc[board["state"] == "COMPLETE", "std"].notna().all()  # cross-validated: a spread per trial
    assert (out / "best" / "model.safetensors").exists() and (out / "tune.json").exists()
    assert "<h2>Search</h2>" in (out / "best" / "report.html").read_text()
    assert "leaderboard" in result.output


@pytest.mark.serial
def test_a_time_limit_bounds_the_whole_search(iris, monkeypatch, tmp_path):
    import time

    from scaletrain.train import budget

    with pytest.raises(ConfigError, match="leaves no room for a search"):
        tune(iris, "target", time_limit="20s", verbose=False)
    monkeypatch.setattr(budget, "MIN_TRIAL_SECONDS", 3.0)  # a short test; 10 s in real searches
    started = time.perf_counter()
    result = tune(iris, "target", search="random", time_limit="12s", space={"train.lr": [0.01, 0.02]},
                  sets=["model.name=mlp", "train.epochs=400", "train.early_stopping=0"], out=tmp_path / "search",
                  verbose=False)
    assert time.perf_counter() - started < 12 * 1.1  # the retrain and the files included
    assert len(_trials(result.leaderboard)) >= 1
    assert result.run.metrics["stopped_by"] == "time limit"


def test_a_bad_space_is_refused_before_any_trial(tmp_path, iris):
    with pytest.raises(ConfigError, match="train.lrr"):
        SearchSpace({"train.lrr": [0.1]})
    with pytest.raises(ConfigError, match="dropout"):
        SearchSpace({"model.dropout": {"low": 0.0, "high": 1.5}})
    with pytest.raises(ConfigError, match="low < high"):
        SearchSpace({"train.lr": {"low": 0.1, "high": 0.01}})
    with pytest.raises(ConfigError, match="grid, random or bayes|choose one of"):
        tune(iris, "target", search="annealing", verbose=False)


def test_grid_points_of_a_range_are_spread_over_it():
    space = SearchSpace({"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                         "model.depth": {"low": 1, "high": 3, "int": True}})
    grid = space.grid()
    assert grid["train.lr"] == [1e-4, 1e-3, 1e-2] and grid["model.depth"] == [1, 2, 3]
    assert space.grid_size() == 9 and math.isclose(space.grid_size(), len(list(itertools.product(*grid.values()))))


def test_the_ray_backend_runs_the_search_on_a_ray_cluster(ray_head, tmp_path, iris):
    data = tmp_path / "iris.csv"
    iris.to_csv(data, index=False)
    result = tune(str(data), "target", search="random", trials=2, backend="ray", out=tmp_path / "search",
                  space={"train.lr": [0.01, 0.03], "model.name": ["mlp"]}, sets=FIXED, verbose=False)
    trials = _trials(result.leaderboard)
    assert len(trials) == 2 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert set(trials["train.lr"]) <= {0.01, 0.03}
    assert (tmp_path / "search" / "best" / "model.safetensors").exists()
