"""Fused inputs: a table whose rows hold an image path beside numbers trains one model over both
(an encoder per image column, concatenated with the rest), chosen against each input alone."""
import base64
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

import scaletrain
from scaletrain.errors import ConfigError


def shapes_table(folder, n=600, seed=0, side=16):
    """Rows whose label needs both a drawn shape (circle or square, the image) and the sign of a
    number: label = circle XOR (x > 0); each input alone says nothing about it."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        circle = bool(rng.random() < 0.5)
        img = Image.new("L", (side, side), 0)
        r = int(rng.integers(4, 7))
        cx, cy = rng.integers(r, side - r, size=2)
        box = [int(cx - r), int(cy - r), int(cx + r), int(cy + r)]
        draw = ImageDraw.Draw(img)
        (draw.ellipse if circle else draw.rectangle)(box, fill=int(rng.integers(150, 256)))
        noisy = np.asarray(img).astype(np.int16) + rng.integers(0, 40, size=(side, side))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / "img" / f"{i}.png")
        x = float(rng.uniform(-1, 1))
        rows.append({"photo": f"img/{i}.png", "x": x, "label": "yes" if circle != (x > 0) else "no"})
    pd.DataFrame(rows).to_csv(folder / "rows.csv", index=False)
    return folder / "rows.csv"


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fused")
    table = shapes_table(folder)
    run = scaletrain.fit(str(table), "label", out=folder / "run", sets=["train.choose_by=validation"])
    return folder, table, run


def test_the_fused_model_needs_both_inputs_and_is_chosen(fused):
    folder, _, run = fused
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    scores = {name: loss for name, loss in metrics["candidates"].items()}
    assert set(scores) == {"mlp", "mlp:table", "mlp:images"}
    assert metrics["model"] == "mlp" and run.config.model.inputs == "all"
    assert metrics["test"]["accuracy"] >= 0.95
    notes = " ".join(metrics["notes"])
    assert "image column 'photo': 16×16 pixels" in notes
    assert "inputs: the kept model (mlp) reads every input" in notes and "column(s) 'photo' added +" in notes
    tried = next(n for n in metrics["notes"] if n.startswith("zero-config tried"))
    for alone in ("mlp:table", "mlp:images"):  # each input alone is near chance
        accuracy = float(tried.split(alone + " (")[1].split("accuracy ")[1].split(",")[0])
        assert accuracy <= 0.75, tried


def test_missing_and_unreadable_images_are_counted_not_fatal(fused):
    folder, table, run = fused
    rows = pd.read_csv(table).head(4)
    (folder / "broken.png").write_bytes(b"not a png at all")
    rows.loc[1, "photo"] = None
    rows.loc[2, "photo"] = "img/none-such.png"
    rows.loc[3, "photo"] = "broken.png"
    rows.to_csv(folder / "few.csv", index=False)
    out = run.predict(folder / "few.csv")
    said = " ".join(out.attrs["warnings"])
    assert "1 of 4 rows without an image" in said and "2 of 4 rows naming no readable image file" in said
    assert len(out) == 4 and out["prediction"].notna().all()
    assert out.loc[0, "prediction"] == rows.loc[0, "label"]  # the readable row is still read
    assert abs(out.loc[1, "proba_yes"] - 0.5) < 0.35  # a missing image: the model cannot be sure


@pytest.mark.parametrize("engine", ["graph", "torch"])
def test_a_row_can_send_its_image_inline_and_the_server_reads_no_paths(fused, engine):
    from fastapi.testclient import TestClient

    from scaletrain.run import Run
    from scaletrain.serve.app import create_app
    from scaletrain.serve.graph import graph_engine

    folder, table, run = fused
    graph = graph_engine(Run.load(folder / "run")) if engine == "graph" else None
    assert graph is None or not graph.reads_records  # images are decoded off the event loop
    rows = pd.read_csv(table).head(6)
    inline = [{"photo": "data:image/png;base64," + base64.b64encode((folder / p).read_bytes()).decode(), "x": x}
              for p, x in zip(rows["photo"], rows["x"])]
    with TestClient(create_app(Run.load(folder / "run"), engine=graph)) as client:
        assert client.get("/health").json()["engine"] == engine
        answer = client.post("/predict", json={"records": inline})
        assert answer.status_code == 200, answer.text
        expected = run.predict(table).head(6)["prediction"].tolist()
        assert answer.json()["predictions"] == expected
        refused = client.post("/predict", json={"records": [{"photo": str(folder / "img" / "0.png"), "x": 0.1}]})
        assert refused.status_code == 422 and "reads no paths" in refused.text
        for i in range(3):  # multipart: the numbers as fields, the image as a file
            form = client.post("/predict", data={"x": str(rows["x"][i])},
                               files={"photo": ("p.png", (folder / rows["photo"][i]).read_bytes(), "image/png")})
            assert form.status_code == 200 and form.json()["predictions"] == expected[i:i + 1], form.text
        no_image = client.post("/predict", data={"x": "0.3"}, files={"other": ("p.png", b"", "image/png")})
        assert no_image.status_code == 422 and "unknown column 'other'" in no_image.text


def test_inputs_are_chosen_only_where_there_are_images(tmp_path):
    frame = pd.DataFrame({"a": np.arange(40.0), "label": [0, 1] * 20})
    with pytest.raises(ConfigError, match="no image column"):
        scaletrain.fit(frame, "label", out=None, sets=["model.name=mlp", "model.inputs=table"])


def test_the_export_reads_pixels_and_numbers_as_predict_does(fused):
    import onnxruntime as ort

    from scaletrain.export.onnx_export import export_onnx, onnx_inputs
    from scaletrain.modalities import read_for_run

    folder, table, run = fused
    rows = pd.read_csv(table).head(40)
    rows.loc[3, "photo"] = None  # a missing image: its flag, and zero pixels the model ignores
    rows.to_csv(folder / "some.csv", index=False)
    path = export_onnx(folder / "run", folder / "fused.onnx")
    card = json.loads(path.with_suffix(".card.json").read_text())
    assert {"photo", "photo.missing", "x"} <= {i["name"] for i in card["inputs"]}
    session = ort.InferenceSession(str(path))
    feeds = onnx_inputs(run, read_for_run(run.preprocess, str(folder / "some.csv")))
    assert feeds["photo"].dtype == np.uint8 and feeds["photo"].shape == (40, 16, 16, 1)
    label, proba = session.run(["label", "probabilities"], feeds)
    expected = run.predict(folder / "some.csv")
    assert list(label) == expected["prediction"].tolist()
    np.testing.assert_allclose(proba, expected[["proba_no", "proba_yes"]].to_numpy(), atol=1e-5)


def test_the_export_reads_an_image_a_text_and_numbers_as_predict_does(tmp_path):
    import onnxruntime as ort

    from scaletrain.export.onnx_export import export_onnx, onnx_inputs
    from scaletrain.modalities import read_for_run

    table = shapes_table(tmp_path, n=160)
    rows = pd.read_csv(table)
    words = np.array("soft fabric runs small lovely color returned itchy perfect fit tight".split())
    rows["review"] = [" ".join(np.random.default_rng(i).choice(words, 8)) for i in range(len(rows))]
    rows.to_csv(table, index=False)
    run = scaletrain.fit(str(table), "label", out=tmp_path / "run", sets=["model.name=mlp", "train.epochs=3"])
    some = rows.head(24).copy()
    some.loc[2, "photo"], some.loc[5, "review"] = None, ""  # a missing image, an empty text
    some.to_csv(tmp_path / "some.csv", index=False)
    path = export_onnx(tmp_path / "run", tmp_path / "fused.onnx")
    feeds = onnx_inputs(run, read_for_run(run.preprocess, str(tmp_path / "some.csv")))
    assert {"photo", "photo.missing", "x", "tokens"} <= set(feeds), sorted(feeds)
    label, proba = ort.InferenceSession(str(path)).run(["label", "probabilities"], feeds)
    expected = run.predict(tmp_path / "some.csv")
    assert list(label) == expected["prediction"].tolist()
    np.testing.assert_allclose(proba, expected[["proba_no", "proba_yes"]].to_numpy(), atol=1e-5)


def test_an_input_of_pure_noise_costs_the_choice_no_more_than_the_spread(tmp_path):
    """Images of noise beside a number that decides the label: zero-config's choice scores within
    the test split's sampling spread of the number alone."""
    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(400):
        Image.fromarray(rng.integers(0, 256, size=(12, 12), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        x = float(rng.normal())
        rows.append({"photo": f"img/{i}.png", "x": x, "label": int(x + 0.3 * rng.normal() > 0)})
    pd.DataFrame(rows).to_csv(tmp_path / "noise.csv", index=False)
    sets = ["train.choose_by=validation"]
    chosen = scaletrain.fit(str(tmp_path / "noise.csv"), "label", out=tmp_path / "auto", sets=sets)
    alone = scaletrain.fit(str(tmp_path / "noise.csv"), "label", out=tmp_path / "table",
                           sets=sets + ["model.name=mlp", "model.inputs=table"])
    best = alone.metrics["test"]["accuracy"]
    spread = (best * (1 - best) / chosen.metrics["data"]["test_rows"]) ** 0.5
    assert chosen.metrics["test"]["accuracy"] >= best - spread, (chosen.metrics["candidates"], best)


def test_explanations_credit_the_image_column_and_add_up(fused):
    from scaletrain.explain import explain_run, table_attributions

    folder, table, run = fused
    frame = run.source(table).frame.head(30)
    found = table_attributions(run, frame)
    assert set(found.frame.columns) == {"x", "photo"}
    strength = found.frame.abs().mean()
    assert strength["photo"] > 0.1 and strength["x"] > 0.1  # the label needs both: both get credit
    np.testing.assert_allclose(found.frame.sum(axis=1), found.output - found.baseline, atol=1e-3)
    summary = explain_run(folder / "run", str(table), out=folder / "explained", rows=60)  # the report's per-input view
    assert set(summary["mean_abs_attribution"]) == {"x", "photo"} and summary["permutation_importance"]["photo"] > 0.1
    assert "pixels-photo" in (folder / "explained" / "explain.html").read_text()
    assert summary["pixels"]["photo"]["rows"] > 0


def test_the_pixels_within_an_image_column_are_explained_where_the_shape_is(fused):
    from scaletrain.explain.pictures import column_heatmaps

    folder, table, run = fused
    maps, images, rows = column_heatmaps(run, run.source(table).frame.head(40))["photo"]
    assert len(rows) == 24 and maps.ig.shape == images.shape[:3]
    gap = np.abs(maps.ig.sum(axis=(1, 2)) - (maps.output - maps.baseline))
    assert gap.max() <= 0.05 * np.abs(maps.output).max()  # each image's pixels share what it added
    inside, area = [], []
    for heat, image in zip(maps.ig, images[..., 0]):
        r, c = np.nonzero(image >= 150)  # the drawn shape (brightness 150..255 over noise below 40)
        box = np.zeros(image.shape, bool)
        box[r.min():r.max() + 1, c.min():c.max() + 1] = True
        inside.append(np.abs(heat)[box].sum() / np.abs(heat).sum())
        area.append(box.mean())
    assert np.mean(inside) > np.mean(area)  # circle or square: told apart where the shape is drawn


def test_image_bytes_in_parquet_and_data_uris_are_image_columns(tmp_path):
    import io

    from scaletrain.data.schema import infer_schema
    from scaletrain.modalities.table.media import fit_media, read_media
    from scaletrain.modalities.table.tables import read_table

    pngs = []
    for shade in range(0, 250, 10):
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 10, 3), shade, dtype=np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    frame = pd.DataFrame({"picture": pngs, "inline": ["data:image/png;base64," + base64.b64encode(p).decode() for p in pngs],
                          "y": [0, 1] * 12 + [0]})
    frame.to_parquet(tmp_path / "rows.parquet")
    read = read_table(tmp_path / "rows.parquet")
    assert isinstance(read.loc[0, "picture"], bytes)  # kept as bytes, not turned into text
    assert infer_schema(read, "y").image == ["picture", "inline"]
    columns = fit_media(read, ["picture", "inline"], None, starts={})
    assert columns[0]["size"] == [8, 10] and columns[0]["channels"] == 3
    absent, pixels = read_media(columns, read.head(3))
    assert not absent.any() and pixels[0].shape == (3, 3, 8, 10) and int(pixels[1][2, 0, 0, 0]) == 20


def test_a_run_whose_image_state_disagrees_with_its_model_is_refused(fused, tmp_path):
    import shutil

    from scaletrain.errors import RunDirError
    from scaletrain.run import Run

    folder, _, _ = fused
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    state = json.loads((copy / "preprocess.json").read_text())
    state["images"][0]["channels"], state["images"][0]["mean"], state["images"][0]["std"] = 3, [0.5] * 3, [0.2] * 3
    (copy / "preprocess.json").write_text(json.dumps(state))
    with pytest.raises(RunDirError, match="media encoders"):
        Run.load(copy)


def test_an_inline_image_over_the_pixel_limit_is_refused(fused):
    from fastapi.testclient import TestClient

    from scaletrain.run import Run
    from scaletrain.serve.app import create_app
    from scaletrain.serve.limits import Limits

    folder, table, _ = fused
    first = pd.read_csv(table).iloc[0]
    inline = "data:image/png;base64," + base64.b64encode((folder / first["photo"]).read_bytes()).decode()
    with TestClient(create_app(Run.load(folder / "run"), limits=Limits(pixels=100))) as client:  # 16×16 = 256 pixels
        answer = client.post("/predict", json={"records": [{"photo": inline, "x": float(first["x"])}]})
        assert answer.status_code == 413 and "--max-pixels" in answer.text


def test_an_image_column_starts_from_an_earlier_image_run(fused, tmp_path):
    """model.encoders.<column>.init_from: the column's encoder is the earlier CNN, every one of
    its tensors loaded (held fixed here by train.freeze=1, so they must come out unchanged)."""
    import torch
    from safetensors.torch import load_file

    folder, table, _ = fused
    rows = pd.read_csv(table).head(300)
    for i, row in rows.iterrows():  # the same drawings, filed by shape: an image run's folder
        shape = folder / "shapes" / ("circle" if (row["label"] == "yes") != (row["x"] > 0) else "square")
        shape.mkdir(parents=True, exist_ok=True)
        (shape / f"{i}.png").write_bytes((folder / row["photo"]).read_bytes())
    scaletrain.fit(str(folder / "shapes"), out=tmp_path / "cnn", sets=["model.name=cnn", "train.epochs=4"])
    start = f"model.encoders.photo.init_from={tmp_path / 'cnn'}"
    run = scaletrain.fit(str(table), "label", out=tmp_path / "run", sets=["model.name=mlp", "train.freeze=1", start])
    before, after = load_file(tmp_path / "cnn" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    encoder = {k.removeprefix("pictures.encoders.0.body."): v for k, v in after.items() if ".encoders.0.body." in k}
    head = sorted(set(before) - set(encoder))
    assert len(head) == 2 and all(k.endswith(("weight", "bias")) for k in head)  # only its output layer left out
    fixed = [k for k in encoder if "running" not in k and "num_batches" not in k]  # batch norm statistics move
    assert fixed and all(torch.equal(before[k], encoder[k]) for k in fixed)
    notes = " ".join(run.metrics["notes"])
    assert f"{len(encoder)} encoder tensors loaded" in notes and run.metrics["test"]["accuracy"] >= 0.85
    from scaletrain.errors import RunDirError
    from scaletrain.run import Run

    state = json.loads((tmp_path / "run" / "preprocess.json").read_text())
    for change, refusal in (({"width": 8}, "media encoders"), ({"depth": 99}, "less than or equal to 6")):
        state["images"][0]["backbone"].update(change)  # a backbone the weights were not trained with: refused
        (tmp_path / "run" / "preprocess.json").write_text(json.dumps(state))
        with pytest.raises(RunDirError, match=refusal):
            Run.load(tmp_path / "run")
    with pytest.raises(ConfigError, match="not a single CNN trained on images"):
        scaletrain.fit(str(table), "label", out=None, sets=["model.name=mlp", "train.epochs=1",
                                                            f"model.encoders.photo.init_from={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="'x' is not an image, sound or text column"):
        scaletrain.fit(str(table), "label", out=None, sets=["model.name=mlp", f"model.encoders.x.init_from={tmp_path}"])


@pytest.mark.parametrize("combiner", ["gated", "attention"])
def test_a_gated_or_attention_combiner_fuses_exports_and_explains(fused, combiner, tmp_path):
    import onnxruntime as ort

    from scaletrain.explain import table_attributions
    from scaletrain.export.onnx_export import export_onnx, onnx_inputs
    from scaletrain.modalities import read_for_run

    folder, table, _ = fused
    run = scaletrain.fit(str(table), "label", out=tmp_path / "run", sets=["model.name=mlp", f"model.combiner={combiner}"])
    assert run.metrics["test"]["accuracy"] >= 0.95 and run.config.model.combiner == combiner
    assert any(name.startswith("combine.") for name, _ in run.model.named_parameters())  # its own weights, kept
    rows = pd.read_csv(table).head(20)
    rows.loc[1, "photo"] = None
    some = folder / f"some-{combiner}.csv"  # beside the images its paths name
    rows.to_csv(some, index=False)
    expected = scaletrain.load(tmp_path / "run").predict(some)
    feeds = onnx_inputs(run, read_for_run(run.preprocess, str(some)))
    label, proba = ort.InferenceSession(str(export_onnx(tmp_path / "run", tmp_path / "m.onnx"))).run(
        ["label", "probabilities"], feeds)
    assert list(label) == expected["prediction"].tolist()
    np.testing.assert_allclose(proba, expected[["proba_no", "proba_yes"]].to_numpy(), atol=1e-5)
    found = table_attributions(run, run.source(some).frame)
    assert (found.frame.abs().mean() > 0.1).all()  # both inputs credited, and the credit adds up
    assert np.abs(found.frame.sum(axis=1) - (found.output - found.baseline)).max() <= 0.05 * np.abs(found.output).max()


def test_a_combiner_needs_several_inputs(tmp_path):
    frame = pd.DataFrame({"a": np.arange(40.0), "label": [0, 1] * 20})
    with pytest.raises(ConfigError, match="fuses several inputs"):
        scaletrain.fit(frame, "label", out=None, sets=["model.name=mlp", "model.combiner=gated"])


def test_a_fused_run_killed_mid_training_resumes_bit_identically(tmp_path):
    """Modality dropout draws from the generator a checkpoint keeps: a resumed run ends equal."""
    from tests.train.test_resume import assert_same_weights, command, kill_at_step, train_here

    table = shapes_table(tmp_path, n=200)
    args = ["--target", "label", "--set", "model.name=mlp", "--set", "train.epochs=3", "--set", "model.modality_dropout=0.3"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    train_here(command(table, reference, *args))
    kill_at_step(command(table, killed, *args), killed, 5)
    train_here(command(table, killed, *args, "--resume"))
    assert_same_weights(reference, killed)
