"""A table's sound columns: a column of clips beside numbers trains one fused model (the clip's
log-mel computed inside it), chosen against each input alone; predict, the ONNX graph (which
takes the waveform) and serve read the same rows alike; missing and unreadable clips are counted."""
import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
import soundfile

import scaletrain
from scaletrain.errors import ConfigError, RunDirError

RATE = 8000  # the clips' own rate: the column reads them at 16 kHz


def tones_table(folder, n: int = 160, seed: int = 0):
    """Rows whose label needs both inputs: a low or a high tone, and a number's sign (their XOR)."""
    rng = np.random.default_rng(seed)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        high, x = i % 2 == 1, float(rng.uniform(-1, 1))
        t = np.arange(int(RATE * rng.uniform(0.2, 0.3))) / RATE
        wave = 0.5 * np.sin(2 * np.pi * (1500 if high else 300) * t) + rng.normal(scale=0.05, size=t.size)
        soundfile.write(folder / "clips" / f"{i}.wav", wave.astype(np.float32), RATE)
        rows.append({"clip": f"clips/{i}.wav", "x": x, "label": "yes" if high == (x > 0) else "no"})
    frame = pd.DataFrame(rows)
    (folder / "clips" / "broken.wav").write_bytes(b"RIFF but not a wave at all")
    frame.loc[0, "clip"], frame.loc[1, "clip"] = "", "clips/broken.wav"  # a missing and an unreadable clip
    frame.to_csv(folder / "rows.csv", index=False)
    return folder / "rows.csv"


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sounds")
    table = tones_table(folder)
    run = scaletrain.fit(str(table), "label", out=folder / "run", sets=["train.choose_by=validation"])
    return folder, table, run


def test_a_sound_column_beside_a_number_trains_the_fused_model(sounds):
    folder, _, run = sounds
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    assert run.modality.name == "table" and run.preprocess["images"][0]["kind"] == "sound"
    assert set(metrics["candidates"]) == {"mlp", "mlp:table", "mlp:images"} and metrics["model"] == "mlp"
    assert metrics["test"]["accuracy"] >= 0.9, metrics["test"]
    notes = " ".join(metrics["notes"])
    assert re.search(r"sound column 'clip': clips of 0\.\d\d s at 16,000 Hz, its own log-mel convolutional encoder; "
                     r"\d+ empty and \d+ unreadable cell\(s\) of \d+ training rows read as missing clips", notes), notes
    assert "column(s) 'clip' added +" in notes
    tried = next(n for n in metrics["notes"] if n.startswith("zero-config tried"))
    for alone in ("mlp:table", "mlp:images"):  # each input alone is near chance
        assert float(tried.split(alone + " (")[1].split("accuracy ")[1].split(",")[0]) <= 0.75, tried


def test_missing_and_unreadable_clips_are_counted_not_fatal(sounds):
    folder, table, run = sounds
    rows = pd.read_csv(table).head(6)
    rows.loc[2, "clip"] = "clips/none-such.wav"
    rows.to_csv(folder / "few.csv", index=False)
    out = run.predict(folder / "few.csv")
    said = " ".join(out.attrs["warnings"])
    assert "1 of 6 rows without a sound clip" in said and "2 of 6 rows naming no readable sound file" in said
    assert len(out) == 6 and (out.prediction[3:] == rows.label[3:]).all()


def test_the_export_takes_the_waveform_and_numbers_as_predict_reads_them(sounds):
    import onnxruntime as ort

    from scaletrain.export.onnx_export import export_onnx, onnx_inputs
    from scaletrain.modalities import read_for_run

    folder, table, run = sounds
    samples = run.preprocess["images"][0]["samples"]
    path = export_onnx(folder / "run", folder / "fused.onnx")
    card = {i["name"]: i for i in json.loads(path.with_suffix(".card.json").read_text())["inputs"]}
    assert card["clip"]["type"] == "float32" and card["clip"]["shape"] == ["batch", samples] and "clip.missing" in card
    feeds = onnx_inputs(run, read_for_run(run.preprocess, str(table)))
    assert feeds["clip"].shape == (160, samples) and feeds["clip.missing"][:2].tolist() == [[1.0], [1.0]]
    label, proba = ort.InferenceSession(str(path)).run(["label", "probabilities"], feeds)
    expected = run.predict(table)
    assert list(label) == expected["prediction"].tolist()
    np.testing.assert_allclose(proba, expected[["proba_no", "proba_yes"]].to_numpy(), atol=1e-5)


def test_a_row_sends_its_clip_inline_or_as_a_file_and_the_server_reads_no_paths(sounds):
    from fastapi.testclient import TestClient

    from scaletrain.run import Run
    from scaletrain.serve.app import create_app
    from scaletrain.serve.graph import graph_engine
    from scaletrain.serve.limits import Limits

    folder, table, run = sounds
    rows = pd.read_csv(table).iloc[2:8].reset_index(drop=True)
    clips = [(folder / p).read_bytes() for p in rows["clip"]]
    inline = [{"clip": "data:audio/wav;base64," + base64.b64encode(c).decode(), "x": x} for c, x in zip(clips, rows["x"])]
    expected = run.predict(table).iloc[2:8]["prediction"].tolist()
    loaded = Run.load(folder / "run")
    with TestClient(create_app(loaded, engine=graph_engine(loaded), limits=Limits(sound_seconds=3.0))) as client:
        answer = client.post("/predict", json={"records": inline})
        assert answer.status_code == 200 and answer.json()["predictions"] == expected, answer.text
        for i in range(2):  # multipart: the number as a field, the clip as a file
            form = client.post("/predict", data={"x": str(rows["x"][i])}, files={"clip": ("c.wav", clips[i], "audio/wav")})
            assert form.status_code == 200 and form.json()["predictions"] == expected[i:i + 1], form.text
        refused = client.post("/predict", json={"records": [{"clip": str(folder / rows["clip"][0]), "x": 0.1}]})
        assert refused.status_code == 422 and "reads no paths" in refused.text
        too_long = client.post("/predict", json={"records": inline * 3})  # ~4.5 s of sound, over the 3 s allowed
        assert too_long.status_code == 413 and "over the limit of 3 s" in too_long.text


def test_a_listing_of_clips_with_feature_columns_is_a_table(tmp_path):
    from scaletrain.modalities import load_source

    table = tones_table(tmp_path, n=30)
    assert load_source(str(table)).kind == "table"
    only_clips = pd.read_csv(table)[["clip", "label"]]
    only_clips.to_csv(tmp_path / "listing.csv", index=False)
    assert load_source(str(tmp_path / "listing.csv")).kind == "audio"  # clips and labels alone: the sound modality's


def test_a_sound_column_is_carried_into_shards_and_trains_from_them(tmp_path):
    import pyarrow.parquet as pq

    from tests.test_cli import prepare_in_a_fresh_interpreter

    table, shards = tones_table(tmp_path, n=160), tmp_path / "shards"
    said, imported = prepare_in_a_fresh_interpreter(table, shards, "label")
    assert imported == "[]"  # bytes are carried, nothing decoded
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["roles"]["sound"] == ["clip"]
    cells = [c for s in manifest["shards"] for c in pq.read_table(shards / s["file"])["clip"].to_pylist()]
    assert sum(c is None for c in cells) == 2 and all(c[:4] == b"RIFF" for c in cells if c is not None)
    absent = manifest["stats"]["media_absent"]["clip"]
    assert f"sound column 'clip': each cell's file carried into the shards; {absent} training cell(s) held no sound " \
           "clip" in said
    run = scaletrain.fit(str(shards), out=tmp_path / "run", sets=["model.name=mlp", "train.epochs=40"])
    assert run.metrics["test"]["accuracy"] >= 0.85, run.metrics["test"]
    assert f"{absent} of {manifest['rows']['train']} training cells held no clip when prepared" in \
        " ".join(run.metrics["notes"])
    predicted = scaletrain.load(tmp_path / "run").predict(table)  # raw rows, paths read as the run was prepared
    assert (predicted["prediction"] == pd.read_csv(table)["label"]).iloc[2:].mean() >= 0.85


def test_a_tampered_sound_column_state_is_refused():
    from scaletrain.data.state_schema import SoundColumnState, check_state

    column = {"name": "clip", "kind": "sound", "rate": 16000, "samples": 4000, "n_fft": 512, "hop": 160, "n_mels": 64,
              "fmin": 20.0, "fmax": 8000.0, "mean": [0.0] * 64, "std": [1.0] * 64}
    check_state(SoundColumnState, column, "preprocess.json")
    for bad in ({"mean": [0.0] * 3}, {"samples": 10 ** 9}, {"n_fft": 10 ** 6}, {"std": [0.0] * 64}):
        with pytest.raises(RunDirError):
            check_state(SoundColumnState, column | bad, "preprocess.json")


def test_a_sound_column_starts_from_an_earlier_sound_run(sounds, tmp_path):
    """model.encoders.<column>.init_from: the column's encoder is the earlier sound run's CNN, every
    one of its tensors loaded (held fixed by train.freeze=1, so they come out unchanged), and its
    clips read through that run's log-mel front."""
    import torch
    from safetensors.torch import load_file

    folder, table, _ = sounds
    rows = pd.read_csv(table).iloc[2:]
    for i, row in rows.iterrows():  # the same clips, filed by pitch: a sound run's folder
        pitch = folder / "tones" / ("high" if (row["label"] == "yes") == (row["x"] > 0) else "low")
        pitch.mkdir(parents=True, exist_ok=True)
        (pitch / f"{i}.wav").write_bytes((folder / row["clip"]).read_bytes())
    scaletrain.fit(str(folder / "tones"), out=tmp_path / "cnn", sets=["model.name=cnn", "train.epochs=3", "model.width=8"])
    start = f"model.encoders.clip.init_from={tmp_path / 'cnn'}"
    run = scaletrain.fit(str(table), "label", out=tmp_path / "run", sets=["model.name=mlp", "train.freeze=1", start])
    before, after = load_file(tmp_path / "cnn" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    encoder = {k.removeprefix("pictures.encoders.0.body."): v for k, v in after.items() if ".encoders.0.body." in k}
    assert len(set(before) - set(encoder)) == 2  # only its output layer left out
    fixed = [k for k in encoder if "running" not in k and "num_batches" not in k]  # batch norm statistics move
    assert fixed and all(torch.equal(before[k], encoder[k]) for k in fixed)
    sound_run = json.loads((tmp_path / "cnn" / "preprocess.json").read_text())
    column = run.preprocess["images"][0]
    assert column["mean"] == sound_run["mean"] and column["rate"] == sound_run["rate"]  # read as that run read its clips
    notes = " ".join(run.metrics["notes"])
    assert f"{len(encoder)} encoder tensors loaded" in notes and "an earlier run's log-mel" in notes
    with pytest.raises(ConfigError, match="not a single CNN trained on sound clips"):
        scaletrain.fit(str(table), "label", out=None, sets=["model.name=mlp", "train.epochs=1",
                                                            f"model.encoders.clip.init_from={tmp_path / 'run'}"])


def test_explain_credits_the_clip_column_and_the_bands_of_its_tone(sounds):
    from scaletrain.data.log_mel import mel_band_centres
    from scaletrain.explain import explain_run
    from scaletrain.explain.pictures import column_heatmaps

    folder, table, run = sounds
    summary = explain_run(folder / "run", str(table), out=folder / "explained", rows=8)
    assert set(summary["mean_abs_attribution"]) == {"x", "clip"} and summary["pixels"]["clip"]["rows"] > 0
    assert "pixels-clip" in (folder / "explained" / "explain.html").read_text()
    frame = run.source(table).frame.head(40)
    maps, spectrograms, rows = column_heatmaps(run, frame)["clip"]
    assert maps.ig.shape == spectrograms.shape and spectrograms.shape[1] == 64
    gap = np.abs(maps.ig.sum(axis=(1, 2)) - (maps.output - maps.baseline))
    assert gap.max() <= 0.05 * np.abs(maps.output).max()  # each clip's bands share what it added
    c = run.preprocess["images"][0]
    centres = mel_band_centres(c["rate"], c["n_fft"], c["n_mels"], c["fmin"], c["fmax"])
    shares = []
    for heat, row in zip(maps.ig, rows):
        tone = np.abs(centres - (1500 if int(frame["clip"][row].rsplit("/", 1)[-1][:-4]) % 2 else 300)).argmin()
        shares.append(np.abs(heat)[max(tone - 4, 0):tone + 5].sum() / np.abs(heat).sum())
    assert np.mean(shares) > 2 * 9 / 64  # the heat lies on the tone's bands: over twice their share of the picture (0.32)


def test_a_spec_whose_sound_front_is_out_of_bounds_is_refused_before_it_is_built(sounds, tmp_path):
    """A tampered model_spec cannot size the DFT basis (n_fft² / 2 numbers, made even for the
    meta device the shapes are checked on): refused as a damaged run directory."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from scaletrain.run import Run

    folder, _, _ = sounds
    copy = shutil.copytree(folder / "run", tmp_path / "run")
    with safe_open(str(copy / "model.safetensors"), "pt") as fh:
        meta = fh.metadata()
    spec = json.loads(meta["model_spec"])
    spec["pictures"][0][3]["sound"]["n_fft"] = 10 ** 6
    save_file(load_file(copy / "model.safetensors"), copy / "model.safetensors", metadata=meta | {"model_spec": json.dumps(spec)})
    with pytest.raises(RunDirError, match="cannot be built.*sound column's front must be"):
        Run.load(copy)
