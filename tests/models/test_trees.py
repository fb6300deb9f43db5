"""Boosted trees: LightGBM's trees compiled into a torch module that predicts what LightGBM
predicts, and zero-config's boosted candidate — chosen where trees fit the data better, kept in
the run directory, loaded, exported to ONNX — and gone when switched off."""
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

import scaletrain
from scaletrain.models.trees import from_lightgbm


@pytest.mark.parametrize("loader, objective, outputs", [(load_wine, "multiclass", 3), (load_diabetes, "regression", 1),
                                                        (load_breast_cancer, "binary", 2)])
def test_compiled_trees_give_lightgbms_raw_scores(loader, objective, outputs):
    x, y = loader(return_X_y=True)
    params = {"objective": objective, "verbosity": -1, "seed": 0} | ({"num_class": 3} if outputs == 3 else {})
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=25)
    raw = booster.predict(x, raw_score=True)
    out = from_lightgbm(booster.model_to_string(), outputs).eval()(torch.tensor(x, dtype=torch.float32)).numpy()
    ours = out if outputs == 3 else out[:, -1]
    np.testing.assert_allclose(ours, raw, rtol=1e-5, atol=1e-3 * np.abs(raw).max())
    if outputs == 2:
        assert (out[:, 0] == 0).all()  # one logit as two: softmax of (0, z) is sigmoid(z)


def test_a_tree_of_one_leaf_compiles_to_its_value():
    x = np.random.default_rng(0).normal(size=(60, 2))
    booster = lgb.train({"objective": "regression", "verbosity": -1}, lgb.Dataset(x, np.full(60, 2.5)), num_boost_round=3)
    out = from_lightgbm(booster.model_to_string(), 1).eval()(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(out.numpy()[:, 0], booster.predict(x), rtol=1e-6)


def steps_table(n: int = 2400, seed: int = 0) -> pd.DataFrame:
    """An exclusive-or of two thresholds (5% labels flipped): axis-aligned steps, what trees
    fit in a few dozen splits and a small MLP only approximates."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] > 0.3) ^ (x[:, 1] > -0.2) ^ (rng.random(n) < 0.05)
    return pd.DataFrame(x, columns=list("abcd")).assign(label=np.where(y, "yes", "no"))


def test_zero_config_keeps_the_trees_where_they_fit_better_and_ships_them(tmp_path):
    from scaletrain.export import export_onnx
    from tests.test_export import onnx_predict, proba_of

    frame = steps_table()
    run = scaletrain.fit(frame.iloc[:2000], "label", test=frame.iloc[2000:], out=tmp_path / "run")
    assert "boosted" in run.metrics["candidates"] and run.metrics["model"] == "boosted"
    assert run.metrics["test"]["accuracy"] > 0.9
    assert any(n.startswith("boosted: LightGBM") for n in run.metrics["notes"])
    loaded = scaletrain.load(tmp_path / "run")
    rows = frame.iloc[2000:].drop(columns="label")
    expected = run.predict(rows)
    np.testing.assert_allclose(proba_of(loaded.predict(rows)), proba_of(expected), atol=1e-6)
    out = onnx_predict(export_onnx(tmp_path / "run"), loaded, rows)
    np.testing.assert_allclose(out["probabilities"], proba_of(expected), atol=1e-5)


def test_boosting_off_leaves_the_networks_alone():
    frame = steps_table(800)
    run = scaletrain.fit(frame, "label", out=None, train__boosting="off", train__choose_by="validation")
    assert "boosted" not in run.metrics["candidates"]


def test_periodic_embeddings_let_the_mlp_fit_a_wave_it_smooths_over_without_them():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(1500, 2))
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(y=2 * np.sin(6 * x[:, 0]) + x[:, 1] + 0.1 * rng.normal(size=1500))
    r2 = {}
    for embedding in ("none", "periodic"):
        run = scaletrain.fit(frame.iloc[:1200], "y", test=frame.iloc[1200:], out=None, model="mlp", epochs=25,
                             model__numeric_embedding=embedding)
        r2[embedding] = run.metrics["test"]["r2"]
    assert r2["periodic"] > 0.9 and r2["periodic"] > r2["none"] + 0.1, r2
