"""A regression over a few whole numbers modelled level by level (train.loss=levels): one logit
per level, cross-entropy, the expected value predicted."""
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

import scaletrain
from scaletrain.data.preprocess import fit_target
from scaletrain.data.stats import TargetStats
from scaletrain.errors import ConfigError
from scaletrain.explain.readout import explained_model
from scaletrain.export import export_onnx, onnx_inputs
from scaletrain.tasks import REGRESSION
from scaletrain.tasks.regression import MAX_LEVELS, level_values
from scaletrain.train.losses import build_loss, nearest_level


def ratings(n: int = 900, seed: int = 0) -> pd.DataFrame:
    """Ratings 1..5 piled up at 5 (as reviews are): a line through them overshoots the top."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    latent = 4.2 + 1.3 * x[:, 0] - 0.7 * x[:, 1] + rng.logistic(scale=0.4, size=n)
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(mood=rng.choice(["calm", "busy"], n))
    return frame.assign(rating=np.clip(np.round(latent), 1, 5).astype(int))


def test_whole_numbers_over_a_few_values_are_levels_and_others_are_not():
    gaps = fit_target(pd.Series([2, 4, 6]), "regression")  # y = 2x: levels the option can model, not a scale
    assert gaps["levels"] == 5 and not gaps["scale"] and fit_target(pd.Series([1, 2, 3, 3]), "regression")["scale"]
    assert "levels" not in fit_target(pd.Series([1.0, 2.5, 3.0]), "regression")
    assert "levels" not in fit_target(pd.Series([0, MAX_LEVELS]), "regression")  # 11 values: a quantity
    plain = TargetStats("regression").to_plain()
    del plain["fractional"], plain["wholes"]  # statistics written before levels were counted claim none
    assert TargetStats.from_plain(plain).fractional
    halves = [TargetStats("regression"), TargetStats("regression")]
    halves[0].update(pd.Series([1, 2])), halves[1].update(pd.Series([3, 5]))
    halves[0].merge(halves[1])  # shards' statistics merged
    assert halves[0].wholes == [1, 2, 3, 5] and halves[0].fractional == 0


def test_the_loss_classifies_each_target_into_its_level_and_the_value_is_their_mean():
    target = fit_target(pd.Series([1, 2, 3, 4, 5, 5, 5]), "regression")
    levels = level_values(target)
    y = torch.tensor([(v - target["mean"]) / target["std"] for v in (1, 3, 5)], dtype=torch.float32)
    assert nearest_level(y, levels).tolist() == [0, 2, 4]
    sure = torch.full((3, 5), -30.0)
    sure[[0, 1, 2], [0, 2, 4]] = 30.0
    assert float(build_loss("levels", "regression", levels=levels)(sure, y)) < 1e-6
    value, _ = REGRESSION.decide(sure, target, "levels")
    np.testing.assert_allclose(value.numpy(), [1, 3, 5], atol=1e-9)
    even, _ = REGRESSION.decide(torch.zeros((1, 5)), target, "levels")
    assert float(even) == pytest.approx(3.0)  # equal logits: the middle of 1..5


def test_a_target_without_levels_is_refused_with_what_to_do(tmp_path):
    frame = ratings(200).assign(rating=lambda f: f["rating"] + 0.5 * f["a"])
    with pytest.raises(ConfigError, match="whole numbers.*use mse"):
        scaletrain.fit(frame, "rating", out=tmp_path / "r", sets=["data.task=regression", "train.loss=levels"])


@pytest.fixture(scope="module")
def levels_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("levels") / "run"
    scaletrain.fit(ratings(), "rating", out=out, model="mlp", epochs=6,
                   sets=["data.task=regression", "train.loss=levels"])
    return out


def test_a_levels_run_predicts_within_the_range_and_exports_the_same_value(levels_run):
    run = scaletrain.load(levels_run)
    rows = ratings(200, seed=1)
    predicted = run.predict(rows.drop(columns="rating"))["prediction"].to_numpy()
    assert run.spec.n_out == 5 and predicted.min() >= 1 and predicted.max() <= 5
    assert run.evaluate(rows)["r2"] > 0.5
    session = ort.InferenceSession(str(export_onnx(levels_run)))
    (value,) = session.run(["value"], onnx_inputs(run, rows.drop(columns="rating")))
    np.testing.assert_allclose(np.ravel(value), predicted, rtol=1e-5, atol=1e-5)


def test_a_levels_run_is_explained_as_the_value_it_predicts(levels_run):
    from scaletrain.explain import table_attributions

    run = scaletrain.load(levels_run)
    rows = ratings(40, seed=2).drop(columns="rating")
    found = table_attributions(run, rows)
    standardized = (run.predict(rows)["prediction"].to_numpy() - run.preprocess["target"]["mean"]) \
        / run.preprocess["target"]["std"]
    np.testing.assert_allclose(found.output, standardized, atol=1e-4)  # the value, not a level's logit
    assert np.abs(found.delta).max() < 0.01 * np.ptp(found.output)  # integrated gradients, refined to 1%
    assert found.frame.abs().mean().idxmax() == "a"
    inputs, _ = run.encode(run.source(rows))  # what heatmaps explain (images, sounds, sequences): the value too
    np.testing.assert_allclose(explained_model(run)(*inputs).squeeze(1).detach().numpy(), standardized, atol=1e-4)


def test_boosted_trees_model_the_levels_too(tmp_path):
    run = scaletrain.fit(ratings(600), "rating", out=tmp_path / "b", model="boosted",
                         sets=["data.task=regression", "train.loss=levels"])
    assert run.spec.n_out == 5 and run.metrics["test"]["r2"] > 0.5


@pytest.mark.parametrize("span, expected", [(5, "levels"), (MAX_LEVELS, "mse"), (None, "mse")])
def test_zero_config_models_a_rating_scale_by_level_and_other_targets_by_value(tmp_path, span, expected):
    frame = ratings(300)
    if span is None:
        frame["rating"] = frame["rating"] + 0.1 * frame["a"]  # a measurement, not a scale
    elif span == MAX_LEVELS:
        frame["rating"] = np.clip(np.round(5.5 + 3 * frame["a"]), 1, MAX_LEVELS).astype(int)
    run = scaletrain.fit(frame, "rating", out=tmp_path / "z", model="mlp", epochs=1, sets=["data.task=regression"])
    assert run.config.train.loss == expected and run.spec.n_out == (5 if expected == "levels" else 1)


@pytest.mark.parametrize("levels", [10 ** 9, "5; rm -rf /", 1])
def test_a_tampered_level_count_is_refused_on_load(levels_run, tmp_path, levels):
    """A count of levels sizes the tensors read out of the outputs: a huge one is refused, not allocated."""
    import json
    import shutil

    from scaletrain.errors import RunDirError

    run = tmp_path / "run"
    shutil.copytree(levels_run, run)
    state = json.loads((run / "preprocess.json").read_text())
    state["target"]["levels"] = levels
    (run / "preprocess.json").write_text(json.dumps(state))
    with pytest.raises(RunDirError, match="levels"):
        scaletrain.load(run)
