"""Sequence columns: a table whose column holds variable-length sequences (numbers, or vectors
per step) trains a recurrent or 1-d convolutional encoder beside its other number columns,
predicts whatever the padding, exports (raw steps in) and serves JSON rows; bad cells are named;
the modality is one package and one registry line."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import scaletrain
from scaletrain.errors import DataError, RunDirError
from scaletrain.models.recurrent import Recurrence, RecurrentNet
from scaletrain.models.temporal import TimeConvNet


def shapes(n: int, seed: int = 0) -> pd.DataFrame:
    """Rows of 2-d paths of 6-20 steps: a bump (up then down) or a dip (down then up) — the
    same values in another order, so only an encoder that reads order tells them apart — plus
    a noisy number column and a label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = int(rng.integers(6, 21))
        t = np.linspace(0, 1, length)
        bump = i % 2 == 0
        level = np.sin(np.pi * t) * (1 if bump else -1) + 0.1 * rng.standard_normal(length)
        steps = np.stack([level, t + 0.1 * rng.standard_normal(length)], axis=1)
        rows.append({"path": steps.round(4).tolist(), "gain": float(rng.normal()), "shape": "bump" if bump else "dip"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shape_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    rows = shapes(240)
    rows.to_json(root / "train.jsonl", orient="records", lines=True)
    runs = {name: scaletrain.fit(str(root / "train.jsonl"), "shape", out=root / name, model=name, epochs=15,
                                 sets=["train.ensemble=off", "model.width=16"]) for name in ("rnn", "conv1d")}
    return root, runs


@pytest.mark.parametrize("name", ["rnn", "conv1d"])
def test_a_sequence_column_trains_an_encoder_that_reads_order(shape_runs, name):
    root, runs = shape_runs
    run = runs[name]
    assert run.modality.name == "sequence" and run.config.model.name == name
    assert run.preprocess["features"] == 2 and [c["name"] for c in run.preprocess["extras"]] == ["gain"]
    assert run.metrics["test"]["accuracy"] >= 0.9, run.metrics["test"]
    fresh = shapes(40, seed=5)
    predicted = scaletrain.load(root / name).predict(fresh.drop(columns="shape"))
    assert (predicted.prediction == fresh["shape"]).mean() >= 0.9


@pytest.mark.parametrize("make", [
    lambda: RecurrentNet(3, 4, Recurrence("gru", 8, 2, True, "mean"), n_extra=1),
    lambda: RecurrentNet(3, 4, Recurrence("lstm", 8, 2, True, "last"), n_extra=1),
    lambda: RecurrentNet(3, 4, Recurrence("gru", 8, 1, False, "last"), n_extra=1),
    lambda: TimeConvNet(3, 4, 8, 3, n_extra=1),
])
def test_a_prediction_does_not_depend_on_the_padding(make):
    torch.manual_seed(0)
    model = make().eval()
    lengths = torch.tensor([3, 7, 1])
    short = torch.randn(3, 7, 3) * (torch.arange(7)[None, :, None] < lengths[:, None, None])
    long = torch.cat([short, torch.zeros(3, 25, 3)], dim=1)
    garbage = long + torch.randn_like(long) * (torch.arange(32)[None, :, None] >= lengths[:, None, None])
    extras = torch.randn(3, 1)
    with torch.no_grad():
        reference = model(short, lengths, extras)
        assert torch.allclose(model(long, lengths, extras), reference, atol=1e-5)
        assert torch.allclose(model(garbage, lengths, extras), reference, atol=1e-5)  # padding is never read
        alone = model(short[1:2, :7], lengths[1:2], extras[1:2])  # the same sequence in a batch of its own
    assert torch.allclose(alone, reference[1:2], atol=1e-5)


@pytest.mark.parametrize("name", ["rnn", "conv1d"])
def test_the_export_takes_raw_steps_and_lengths(shape_runs, name):
    import onnxruntime as ort

    from scaletrain.export.onnx_export import export_onnx, onnx_inputs

    root, runs = shape_runs
    run = scaletrain.load(root / name)
    session = ort.InferenceSession(str(export_onnx(root / name)))
    assert [i.name for i in session.get_inputs()] == ["steps", "lengths", "numbers"]
    rows = shapes(30, seed=9).drop(columns="shape")
    rows.loc[0, "gain"] = np.nan  # a missing number: the median, in the graph as in predict
    labels, proba = session.run(["label", "probabilities"], onnx_inputs(run, rows))
    ours = run.predict(rows)
    assert labels.tolist() == ours.prediction.tolist()
    np.testing.assert_allclose(proba, ours[[f"proba_{c}" for c in run.classes]].to_numpy(), atol=1e-5)
    card = json.loads((root / name / "model.card.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["steps", "lengths", "numbers"]


def test_parquet_lists_of_numbers_and_a_dataframe_are_read(tmp_path):
    from scaletrain.modalities import load_source

    rows = shapes(12)
    rows["path"] = rows["path"].map(lambda steps: [s[0] for s in steps])  # one number per step
    rows.to_parquet(tmp_path / "rows.parquet")
    source = load_source(tmp_path / "rows.parquet")
    assert source.kind == "sequence" and len(source) == 12
    assert load_source(rows).kind == "sequence"
    assert load_source(rows.drop(columns="path")).kind == "table"  # no list column: a plain table


def test_bad_cells_are_named(tmp_path):
    rows = shapes(40)
    ragged = rows.copy()
    ragged.at[7, "path"] = [[1.0, 2.0], [3.0]]
    with pytest.raises(DataError, match="row 7, column 'path'.*not all vectors of one length"):
        scaletrain.fit(ragged, "shape", out=tmp_path / "a", model="conv1d", epochs=1)
    wide = rows.copy()
    wide.at[20, "path"] = [[1.0, 2.0, 3.0]]
    with pytest.raises(DataError, match="row 20, column 'path': 3 numbers per step where the others have 2"):
        scaletrain.fit(wide, "shape", out=tmp_path / "b", model="conv1d", epochs=1)
    words = rows.copy()
    words.at[3, "path"] = ["up", "down"]
    with pytest.raises(DataError, match="row 3, column 'path'"):
        scaletrain.fit(words, "shape", out=tmp_path / "c", model="conv1d", epochs=1)
    assert not (tmp_path / "a").exists() or not (tmp_path / "a" / "model.safetensors").exists()


def test_predict_refuses_rows_without_the_sequence_column(shape_runs):
    root, _ = shape_runs
    with pytest.raises(DataError, match="lacks the sequence column 'path'"):
        scaletrain.load(root / "conv1d").predict(pd.DataFrame({"gain": [1.0], "other": [[1.0]]}))


def test_serve_takes_json_rows_with_a_sequence(shape_runs):
    from fastapi.testclient import TestClient

    from scaletrain.serve import load_app

    root, _ = shape_runs
    rows = shapes(4, seed=3)
    records = rows.drop(columns="shape").to_dict(orient="records")
    with TestClient(load_app(root / "rnn")) as c:
        answer = c.post("/predict", json={"records": records})
        assert answer.status_code == 200, answer.text
        expected = scaletrain.load(root / "rnn").predict(rows.drop(columns="shape")).prediction.tolist()
        assert answer.json()["predictions"] == expected
        bad = c.post("/predict", json={"records": [{"path": "not steps", "gain": 1.0}]})
        assert bad.status_code == 422 and "path" in bad.json()["error"]
        assert c.get("/metadata").json()["inputs"][0]["type"] == "steps"


@pytest.mark.parametrize("change,message", [
    ({"std": [0.0, 1.0]}, "std"),          # a zero scale: every prediction the same
    ({"features": 5}, "5 numbers per step but 2"),
    ({"steps": 10 ** 9}, "steps"),         # a padding no read could honour
])
def test_a_tampered_sequence_run_is_refused_on_load(shape_runs, tmp_path, change, message):
    from tests.rundir_mutations import with_state_changed

    root, _ = shape_runs
    with pytest.raises(RunDirError, match=message):
        scaletrain.load(with_state_changed(root / "conv1d", tmp_path / "run", change))


def test_prepare_says_it_does_not_shard_sequences_yet(shape_runs, tmp_path):
    from scaletrain.modalities import prepare_shards

    root, _ = shape_runs
    with pytest.raises(DataError, match="does not shard sequences yet"):
        prepare_shards([str(root / "train.jsonl")], str(tmp_path / "shards"), target="shape")
    assert not (tmp_path / "shards").exists()


@pytest.mark.parametrize("name", ["rnn", "conv1d"])
def test_explain_puts_the_heat_on_the_real_steps(shape_runs, tmp_path, name):
    from safetensors.numpy import load_file

    from scaletrain.explain import explain_run

    root, runs = shape_runs
    rows = shapes(8, seed=2).drop(columns="shape")
    summary = explain_run(root / name, rows, out=tmp_path / "explain", rows=8)
    assert summary["rows"] == 8 and "step heatmaps" in summary["headline"]
    assert summary["completeness_max_abs_error"] < 0.05  # Integrated Gradients add up to f(x) - f(mean)
    maps = load_file(str(tmp_path / "explain" / "heatmaps.safetensors"))
    lengths = rows["path"].map(len).to_numpy()
    for kind in ("integrated_gradients", "occlusion"):
        heat = maps[kind]
        assert heat.shape == (8, 2, runs[name].preprocess["steps"])
        padding = np.arange(heat.shape[2])[None, :] >= lengths[:, None]
        assert np.abs(heat).sum(axis=1)[padding].max() < 1e-4  # the padding is never read: no heat (but float noise)
        assert np.abs(heat).sum() > 0
    table = pd.read_csv(tmp_path / "explain" / "explanations.csv")
    assert list(table.columns) == ["row", "prediction", "peak_step", "peak_feature"]
    assert (table.peak_step < lengths).all()
    assert "Integrated Gradients" in (tmp_path / "explain" / "explain.html").read_text()


def test_cross_validation_and_a_search_take_sequences(shape_runs, tmp_path):
    from scaletrain.api import cross_validate, tune

    root, _ = shape_runs
    result = cross_validate(str(root / "train.jsonl"), "shape", k=3, epochs=6, model="conv1d", model__width=8)
    assert len(result["folds"]) == 3 and result["mean"]["accuracy"] >= 0.8, result["mean"]
    found = tune(str(root / "train.jsonl"), "shape", search="random", trials=2, out=tmp_path / "search",
                            sets=["train.epochs=4", "model.width=8"], verbose=False)
    board = pd.read_csv(tmp_path / "search" / "leaderboard.csv")
    assert len(board) == 3 and set(board["state"]) == {"COMPLETE"}
    assert scaletrain.load(tmp_path / "search" / "best").modality.name == "sequence" and found is not None


def test_a_damaged_or_empty_sequence_file_gets_a_clear_error(tmp_path):
    from scaletrain.modalities import load_source

    good = shapes(6).to_json(orient="records", lines=True)
    (tmp_path / "cut.jsonl").write_text(good[: len(good) // 2])  # cut mid-row
    with pytest.raises(DataError, match="cut.jsonl' as JSON lines"):
        load_source(tmp_path / "cut.jsonl")
    shapes(6).iloc[:0].to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(DataError, match="empty.parquet' holds (a header but )?no (data )?rows"):
        load_source(tmp_path / "empty.parquet")


@pytest.mark.parametrize("line", ["null", "[1, 2]", '"text"'])
def test_a_jsonl_line_that_is_not_a_row_is_named(tmp_path, line):
    (tmp_path / "rows.jsonl").write_text('{"s": [1, 2], "y": 1}\n' + line + '\n{"s": [3], "y": 0}\n')
    with pytest.raises(DataError, match="line 2 is .*not an object"):
        scaletrain.fit(str(tmp_path / "rows.jsonl"), "y", out=None)


def test_a_target_of_lists_is_refused_by_name(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"s": [1, 2], "y": 1}\n{"s": [3], "y": [0, 1]}\n{"s": [4], "y": 0}\n')
    with pytest.raises(DataError, match="target column 'y' holds a list in row 1"):
        scaletrain.fit(str(tmp_path / "rows.jsonl"), "y", out=None)
