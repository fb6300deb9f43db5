"""`scaletrain export`: one ONNX file that takes raw input and gives predict's labels and
probabilities, with a model card; and input that does not fit the trained schema, said."""
import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.errors import DataError, ExportError
from scaletrain.export import export_onnx, onnx_inputs
from tests.test_text_columns import articles


def mixed_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numbers with missing values, a one-hot category with missing values, an embedded one, a boolean."""
    rng = np.random.default_rng(seed)
    x, color = rng.normal(size=n), rng.choice(["red", "green", "blue"], n)
    flag, city = rng.choice(["yes", "no"], n), np.array([f"c{i}" for i in rng.integers(0, 40, n)])
    logit = 2 * x + (color == "red") - (flag == "yes") + (np.char.endswith(city, "7"))
    frame = pd.DataFrame({"x": x, "color": color, "flag": flag, "city": city, "z": rng.normal(size=n),
                          "label": np.where(logit + rng.normal(size=n) > 0, "pos", "neg")})
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "color"] = np.nan
    return frame


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "table"
    scaletrain.fit(mixed_table(), "label", out=out, model="mlp", epochs=3, sets=["data.max_onehot=10"])
    return out


def proba_of(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("proba_")]].to_numpy()


def onnx_predict(path, run, raw):
    session = ort.InferenceSession(str(path))
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, onnx_inputs(run, raw))))


def test_a_table_run_exports_to_onnx_that_predicts_as_predict_does(table_run):
    path = export_onnx(table_run)
    run = scaletrain.load(table_run)
    rows = mixed_table(120, seed=1).drop(columns="label")
    rows.loc[3, "city"], rows.loc[4, "x"], rows.loc[5, "flag"] = "never-seen", 1e9, np.nan
    out, expected = onnx_predict(path, run, rows), run.predict(rows)
    assert run.preprocess["embed"] and run.preprocess["onehot"] and run.preprocess["columns"]["boolean"]
    assert (out["label"] == expected["prediction"].to_numpy()).all()
    np.testing.assert_allclose(out["probabilities"], proba_of(expected), atol=1e-5)
    card = json.loads(path.with_suffix(".card.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["x", "z", "flag", "color", "city"]
    assert card["classes"] == ["neg", "pos"] and card["metrics"]["test"]
    flags = dict(zip(card["outputs"][2]["columns"], out["unfit"].T))  # which values did not fit, per row
    assert np.flatnonzero(flags["city"]).tolist() == [3] and np.flatnonzero(flags["x"]).tolist() == [4]
    assert out["unfit"].sum() == 2


def test_a_second_export_reuses_the_onnx_function_table(table_run, tmp_path, monkeypatch):
    """torch's exporter would parse ~500 onnxscript functions' source again on every export (~1 s)
    and read their signatures into a new registry (~0.3 s)."""
    from onnxscript._framework_apis import torch_2_11
    from torch.onnx._internal.exporter import _registration

    export_onnx(table_run, tmp_path / "first.onnx")
    read = torch_2_11.get_torchlib_ops.cache_info()

    def refused(self):
        raise AssertionError("the registry's signatures read again")

    monkeypatch.setattr(_registration.OnnxDecompMeta, "__post_init__", refused)
    export_onnx(table_run, tmp_path / "second.onnx")
    after = torch_2_11.get_torchlib_ops.cache_info()
    assert after.misses == read.misses == 1  # parsed once: the second export's registry is the first's, copied
    first, second = _registration.ONNXRegistry.from_torchlib(), _registration.ONNXRegistry.from_torchlib()
    second.functions[next(iter(second.functions))].clear()  # as a custom translation table would change it
    assert first.functions.keys() == second.functions.keys() and all(first.functions.values())


@pytest.mark.parametrize("shifts", ["off", "on"])  # on: the graph averages the shifted views too
def test_an_image_run_takes_uint8_pixels(tmp_path, shifts):
    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype(np.uint8)[..., None]
    run = scaletrain.fit(images[:900], y=digits.target[:900], out=tmp_path / "img", model="cnn", epochs=1,
                         sets=[f"model.test_shifts={shifts}"])
    assert run.model.shifted_views == (shifts == "on")
    path = export_onnx(tmp_path / "img", tmp_path / "digits.onnx")
    raw = images[900:1100]
    out = onnx_predict(path, run, raw)
    assert ort.InferenceSession(str(path)).get_inputs()[0].type == "tensor(uint8)"
    assert (out["label"] == run.predict(raw)["prediction"].to_numpy()).all()
    np.testing.assert_allclose(out["probabilities"], proba_of(run.predict(raw)), atol=1e-5)


@pytest.mark.parametrize("model, sets", [("mlp", []), ("linear", ["model.text_pairs=true"]),  # pairs hashed in the graph
                                         ("transformer", ["model.width=32", "model.depth=1", "model.heads=2",
                                                      "model.max_positions=8"]),  # 3 windows a text
                                         ("rnn", ["model.width=8"])])  # the graph reads every padded piece
def test_a_text_run_takes_token_ids_from_the_tokenizer_beside_it(tmp_path, model, sets):
    run = scaletrain.fit(articles(200), "topic", out=tmp_path / "text", model=model, epochs=2, sets=sets)
    path = export_onnx(tmp_path / "text")
    rows = articles(80, seed=1).drop(columns="topic")
    tokenizer = path.with_suffix(".tokenizer.json").read_text()
    session = ort.InferenceSession(str(path))
    label, proba = session.run(["label", "probabilities"], onnx_inputs(run, rows, tokenizer))
    expected = run.predict(rows)
    assert (label == expected["prediction"].to_numpy()).all()
    np.testing.assert_allclose(proba, proba_of(expected), atol=1e-5)


def test_a_regression_run_gives_the_value(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.choice(["u", "v"], 300)})
    frame["y"] = 3 * frame["a"] + (frame["b"] == "u") + 100
    run = scaletrain.fit(frame, "y", out=tmp_path / "reg", model="linear", epochs=5)
    session = ort.InferenceSession(str(export_onnx(tmp_path / "reg")))
    (value,) = session.run(["value"], onnx_inputs(run, frame.drop(columns="y")))
    np.testing.assert_allclose(value, run.predict(frame)["prediction"].to_numpy(), rtol=1e-5)


def test_datetime_columns_are_refused_with_what_to_do(tmp_path, mixed_frame):
    scaletrain.fit(mixed_frame, "label", out=tmp_path / "dates", epochs=1)
    with pytest.raises(ExportError, match="datetime column"):
        export_onnx(tmp_path / "dates")


def test_predict_says_what_does_not_fit_and_strict_refuses_it(table_run, tmp_path):
    run = scaletrain.load(table_run)
    rows = mixed_table(20, seed=2).drop(columns=["label", "z"])
    rows["x"] = "tall"  # a word in place of a measurement, on every row
    rows.loc[0, "color"] = "purple"
    warnings = run.predict(rows).attrs["warnings"]
    assert any("'x': 20 of 20 rows not a number" in w for w in warnings)
    assert any("'color': 1 of 20 rows a category the model never saw" in w and "purple" in w for w in warnings)
    assert any("'z'" in w and "missing column" in w for w in warnings)
    with pytest.raises(DataError, match="does not fit"):
        run.predict(rows, strict=True)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    said = CliRunner().invoke(app, ["predict", str(table_run), str(tmp_path / "rows.csv"), "--output",
                                    str(tmp_path / "p.csv")])
    assert said.exit_code == 0 and "warning: column 'x'" in said.output
    refused = CliRunner().invoke(app, ["predict", str(table_run), str(tmp_path / "rows.csv"), "--strict"])
    assert refused.exit_code == 2 and "does not fit" in refused.output


def test_the_export_command_writes_the_model_and_its_card(table_run, tmp_path):
    result = CliRunner().invoke(app, ["export", str(table_run), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").stat().st_size > 0 and (tmp_path / "m.card.json").is_file()
