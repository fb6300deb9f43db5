"""Zero-config's blend of candidates: weights chosen on held-out outputs, kept where it beats
the chosen candidate, saved, loaded, exported and explained like any model."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import scaletrain
from scaletrain.models.ensemble import Ensemble, combine
from scaletrain.train.blend import blend_weights


def test_weights_go_to_members_whose_errors_cancel_and_not_to_a_useless_one():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2000, 1, generator=g)
    first, second = y + torch.randn(2000, 1, generator=g), y + torch.randn(2000, 1, generator=g)
    useless = 10 + torch.randn(2000, 1, generator=g)  # no signal, and far off
    mse = nn.MSELoss()
    weights = blend_weights([first, second, useless], y, "mean", mse)
    assert weights[2] == 0 and 0.35 <= weights[0] <= 0.65 and abs(sum(weights) - 1) < 1e-9
    blended = combine(torch.stack([first, second, useless]), "mean", weights)
    assert mse(blended, y) < 0.7 * min(mse(first, y), mse(second, y))  # independent errors: about half


def test_a_weighted_ensemble_averages_the_members_probabilities():
    a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    x = torch.randn(5, 3)
    out = Ensemble([a, b], "softmax", [1.0, 3.0])(x)
    expected = 0.25 * torch.softmax(a(x), -1) + 0.75 * torch.softmax(b(x), -1)
    torch.testing.assert_close(torch.softmax(out, -1), expected)
    with pytest.raises(ValueError, match="non-negative weights"):
        Ensemble([a, b], "softmax", [1.0])


def linear_plus_steps(n: int = 1400, seed: int = 0) -> pd.DataFrame:
    """An additive slope over eight columns, which trees approximate in stairs, and a step the
    linear model cannot bend to: each candidate misses what another gets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    y = 0.7 * x.sum(axis=1) + 3 * (x[:, 0] > 0.5) + rng.normal(scale=0.5, size=n)
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(8)]).assign(y=y)


def test_zero_config_blends_the_candidates_and_ships_the_blend(tmp_path):
    from scaletrain.explain import table_attributions
    from scaletrain.export import export_onnx
    from tests.test_export import onnx_predict

    frame = linear_plus_steps()
    train, test = frame.iloc[:1000], frame.iloc[1000:]
    run = scaletrain.fit(train, "y", test=test, out=tmp_path / "run", epochs=30)
    blend = run.metrics["blend"]
    assert run.metrics["model"] == "blend" and blend["kept"] and blend["weights_on"] == "out-of-fold"
    assert "boosted" in blend["weights"] and len(blend["weights"]) >= 2
    assert any("blend model was refit on training + validation rows" in n for n in run.metrics["notes"])
    assert blend["val_loss"]["blend"] < min(v for k, v in blend["val_loss"].items() if k != "blend")
    alone = scaletrain.fit(train, "y", test=test, out=None, epochs=30, train__blend="off")
    assert alone.metrics["model"] != "blend" and "blend" not in alone.metrics
    assert run.metrics["test"]["r2"] > alone.metrics["test"]["r2"]

    loaded = scaletrain.load(tmp_path / "run")
    rows = test.drop(columns="y")
    expected = run.predict(rows)["prediction"].to_numpy()
    np.testing.assert_allclose(loaded.predict(rows)["prediction"].to_numpy(), expected, rtol=1e-5)
    out = onnx_predict(export_onnx(tmp_path / "run"), loaded, rows)
    np.testing.assert_allclose(np.ravel(out["value"]), expected, rtol=1e-4, atol=1e-4)
    found = table_attributions(loaded, rows.iloc[:40])
    assert np.abs(found.delta).max() < 1e-4  # completeness: each row's sum is its output minus the background's
    assert found.frame.abs().mean().idxmax() == "x0"  # the slope and the step


def test_sampled_shapley_values_of_trees_are_exact_on_two_columns(tmp_path):
    """With two columns an order and its reverse are every order: the sampling is exact."""
    from scaletrain.explain import table_attributions
    from tests.shapley import exact_shapley

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=600), "c": rng.choice(list("pqrs"), 600)})
    frame["y"] = np.where(frame.a * (frame.c == "p") + 0.5 * frame.a + rng.normal(scale=0.3, size=600) > 0, "yes", "no")
    scaletrain.fit(frame, "y", out=tmp_path / "run", model="boosted")
    run = scaletrain.load(tmp_path / "run")
    rows = frame.drop(columns="y").iloc[:30]
    exact = exact_shapley(run, rows)
    found = table_attributions(run, rows).frame[exact.columns]
    np.testing.assert_allclose(found.to_numpy(), exact.to_numpy(), rtol=1e-4, atol=1e-5)


def test_node_tables_that_point_outside_the_tree_or_the_row_are_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from scaletrain.errors import RunDirError

    frame = linear_plus_steps(400)
    scaletrain.fit(frame, "y", out=tmp_path / "run", model="boosted")
    weights = tmp_path / "run" / "model.safetensors"
    with safe_open(weights, "pt") as fh:
        metadata = fh.metadata()
    tensors = load_file(weights)
    for key, bad, message in (("feature", 10 ** 6, "splits on input"), ("left", 10 ** 6, "points to child"),
                              ("right", -5, "points to child")):
        tampered = dict(tensors)
        tampered[key] = tensors[key].clone()
        tampered[key][0, 0] = bad
        save_file(tampered, weights, metadata=metadata)
        with pytest.raises(RunDirError, match=message):
            scaletrain.load(tmp_path / "run")
