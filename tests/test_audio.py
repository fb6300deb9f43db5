"""Sound clips: reading (mono, resampled, one length), log-mel features equal to librosa's, files
that cannot be used, and a folder of clips to a trained run that predicts, exports (raw
waveform in) and serves uploads (that audio is one package and one registry line: tests/test_layout.py)."""
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import ShortTimeFFT, get_window

import scaletrain
from scaletrain.data.log_mel import LOG_FLOOR, LogMel, mel_filterbank
from scaletrain.data.sounds import MAX_CLIP_SECONDS, read_clip
from scaletrain.errors import DataError, InputTooLarge
from scaletrain.modalities.audio.clips import read_clip_folder
from tests import warm_cli


def tone_folder(folder: Path, per_class: int = 30, seed: int = 0) -> Path:
    """Three classes told apart by pitch (a low tone, a high tone, a rising chirp), at three
    rates and three formats, some in stereo, of varied length and loudness, with noise."""
    rng = np.random.default_rng(seed)
    for label, pitch in (("low", 300.0), ("high", 1200.0), ("chirp", None)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rate = (8000, 16000, 22050)[i % 3]
            seconds = rng.uniform(0.3, 0.6)
            t = np.arange(int(seconds * rate)) / rate
            wave = np.sin(2 * np.pi * pitch * rng.uniform(0.9, 1.1) * t) if pitch else \
                np.sin(2 * np.pi * (200 + 1500 * t / seconds) * t)
            wave = rng.uniform(0.1, 0.8) * wave + 0.05 * rng.standard_normal(len(t))
            if i % 4 == 0:
                wave = np.stack([wave, 0.5 * wave], axis=1)
            sf.write(folder / label / f"{i}.{('wav', 'flac', 'ogg')[i % 3]}", wave.astype(np.float32), rate)
    return folder


def test_log_mel_features_equal_librosas():
    librosa = pytest.importorskip("librosa")
    rate = 16000
    t = np.arange(rate) / rate
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.random.default_rng(0).standard_normal(rate)).astype(np.float32)
    reference_bank = librosa.filters.mel(sr=rate, n_fft=512, n_mels=64, fmin=20.0, fmax=8000.0)
    assert np.abs(mel_filterbank(rate, 512, 64, 20.0, 8000.0) - reference_bank).max() < 1e-6
    # librosa's melspectrogram(center=True, pad_mode="constant", power=2) is exactly its bank times scipy's
    # |STFT|² (frames centred on every 160th sample, zeros outside): measured equal to the last bit. Its own
    # stft compiles numba kernels on first use (~20 s in a fresh venv); scipy's needs none
    frames = ShortTimeFFT(get_window("hann", 512), hop=160, fs=rate, mfft=512, scale_to=None)
    reference = reference_bank @ np.abs(frames.stft(wave.astype(np.float64), p0=0, p1=rate // 160 + 1)) ** 2
    ours = LogMel(rate).log_mel(torch.from_numpy(wave)[None])[0].numpy()
    assert ours.shape == reference.shape == (64, 101)
    assert np.abs(ours - np.log(np.maximum(reference, LOG_FLOOR))).max() < 1e-4


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampling_keeps_a_sines_frequency(tmp_path, rate):
    t = np.arange(rate) / rate
    sf.write(tmp_path / "a.wav", np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32), rate)
    wave = read_clip(tmp_path / "a.wav", 16000)
    assert abs(len(wave) - 16000) <= 1  # one second, now at 16 kHz, mixed down to one channel
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.fft.rfftfreq(len(wave), 1 / 16000)[spectrum.argmax()] - 440) <= 1.0


def test_files_that_cannot_be_used_are_named_and_skipped(tmp_path):
    folder = tone_folder(tmp_path / "clips", per_class=3)
    (folder / "low" / "corrupt.wav").write_bytes(b"RIFF\x00\x00 not really a wave" * 10)
    sf.write(folder / "high" / "empty.wav", np.zeros((0,), np.float32), 16000)
    long = folder / "chirp" / "two_hours.flac"
    with sf.SoundFile(long, "w", samplerate=1000, channels=1, format="FLAC") as out:  # silence compresses to little
        for _ in range(72):
            out.write(np.zeros(100_000, np.float32))
    assert 7200 / 60 > MAX_CLIP_SECONDS / 60
    with pytest.raises(DataError, match="corrupt.wav' is not a sound file"):
        read_clip(folder / "low" / "corrupt.wav", 16000)
    with pytest.raises(DataError, match="empty.wav' holds no samples"):
        read_clip(folder / "high" / "empty.wav", 16000)
    with pytest.raises(InputTooLarge, match="lasts 120 minutes.*cut long recordings"):
        read_clip(long, 16000)
    clips = read_clip_folder(folder)
    assert len(clips) == 9 and len(clips.skipped) == 3
    assert all(any(name in s for s in clips.skipped) for name in ("corrupt.wav", "empty.wav", "two_hours.flac"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "stray.txt").write_text("not a sound")
    with pytest.raises(DataError, match="holds no sound files"):
        read_clip_folder(tmp_path / "notes")


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    folder = tone_folder(root / "clips", per_class=30)
    run = scaletrain.fit(folder, out=root / "run", epochs=12, model__width=8)  # zero-config's batch size for 64 clips
    return root, folder, run


def test_a_folder_of_clips_trains_and_predicts_files(tone_run):
    root, folder, run = tone_run
    assert run.modality.name == "audio" and run.config.model.name == "resnet"
    assert run.metrics["test"]["accuracy"] >= 0.85, run.metrics["test"]
    stored = scaletrain.load(root / "run")
    predicted = stored.predict(folder / "high")
    assert list(predicted.columns[:2]) == ["clip", "prediction"] and (predicted.prediction == "high").mean() >= 0.8
    again = stored.predict(folder / "high" / "1.flac")
    assert again.prediction.iloc[0] == predicted.set_index("clip").loc[str(folder / "high" / "1.flac"), "prediction"]


def test_the_export_takes_raw_waveforms_with_the_features_inside(tone_run):
    import onnxruntime as ort

    from scaletrain.export.onnx_export import export_onnx

    root, folder, _ = tone_run
    stored = scaletrain.load(root / "run")
    session = ort.InferenceSession(str(export_onnx(root / "run")))
    assert [i.name for i in session.get_inputs()] == ["waveform"]
    waves = stored.source(folder / "chirp").items.waves
    labels, proba = session.run(["label", "probabilities"], {"waveform": waves})
    ours = stored.predict(folder / "chirp")
    assert labels.tolist() == ours.prediction.tolist()
    np.testing.assert_allclose(proba, ours[[f"proba_{c}" for c in stored.classes]].to_numpy(), atol=1e-5)


def test_serve_takes_a_sound_upload_and_refuses_what_is_not_one(tone_run):
    from fastapi.testclient import TestClient

    from scaletrain.serve import load_app

    root, folder, _ = tone_run
    data = (folder / "low" / "0.wav").read_bytes()
    with TestClient(load_app(root / "run")) as c:
        answer = c.post("/predict", files={"file": ("low.wav", data, "audio/wav")})
        assert answer.status_code == 200 and set(answer.json()["probabilities"][0]) == {"chirp", "high", "low"}
        raw = c.post("/predict", content=data, headers={"content-type": "audio/wav"})
        assert raw.json()["predictions"] == answer.json()["predictions"]
        bad = c.post("/predict", files={"file": ("x.wav", b"RIFF but not a wave", "audio/wav")})
        assert bad.status_code == 422 and "is not a sound file" in bad.json()["error"]
        assert c.post("/predict", content=b"\x89PNG", headers={"content-type": "image/png"}).status_code == 415
        assert c.post("/predict", json={"records": [{}]}).status_code == 415
        assert c.get("/metadata").json()["inputs"][0]["type"] == "audio"


def test_an_upload_is_read_as_the_run_reads_clips():
    from scaletrain.modalities.audio import AUDIO

    buffer = io.BytesIO()
    sf.write(buffer, np.sin(np.arange(4000) / 5).astype(np.float32), 8000, format="WAV")
    state = {"rate": 16000, "samples": 12000}
    source = AUDIO.upload_source(state, buffer.getvalue(), "up.wav", None)
    assert source.items.waves.shape == (1, 12000) and source.items.rate == 16000  # resampled, padded


@pytest.mark.parametrize("cell,pooling", [("gru", "mean"), ("lstm", "last")])
def test_a_recurrent_encoder_reads_the_frames_and_exports(tone_run, cell, pooling):
    import onnxruntime as ort

    from scaletrain.export.onnx_export import export_onnx
    from scaletrain.models.recurrent import RecurrentNet

    root, folder, _ = tone_run
    run = scaletrain.fit(folder, out=root / f"rnn_{cell}", epochs=15, model="rnn", model__cell=cell,
                         model__pooling=pooling, model__width=32)
    assert isinstance(run.model, RecurrentNet) and isinstance(run.model.forwards[0], torch.nn.GRU if cell == "gru" else torch.nn.LSTM)
    assert run.metrics["test"]["accuracy"] >= 0.85, run.metrics["test"]
    session = ort.InferenceSession(str(export_onnx(root / f"rnn_{cell}")))
    waves = run.source(folder / "low").items.waves
    _, proba = session.run(["label", "probabilities"], {"waveform": waves})
    ours = run.predict(folder / "low")
    np.testing.assert_allclose(proba, ours[[f"proba_{c}" for c in run.classes]].to_numpy(), atol=1e-5)


def test_the_last_state_of_both_directions_is_read_from_both_ends():
    from scaletrain.models.recurrent import Recurrence, RecurrentNet

    torch.manual_seed(0)
    net = RecurrentNet(3, 2, Recurrence("gru", 4, 1, True, "last")).eval()
    x = torch.randn(2, 7, 3)
    forward, _ = net.forwards[0](x)
    backward, _ = net.backwards[0](x.flip(1))
    expected = net.head(torch.cat([forward[:, -1], backward[:, -1]], dim=-1))
    torch.testing.assert_close(net(x), expected)
    x_changed = x.clone()
    x_changed[:, 3] += 1.0  # a middle step reaches both directions' last states
    assert not torch.allclose(net(x_changed), net(x))


def test_explain_draws_time_frequency_heatmaps_where_the_tone_is(tone_run):
    from safetensors.numpy import load_file

    from scaletrain.data.log_mel import mel_band_centres
    from scaletrain.explain import explain_run

    root, folder, run = tone_run
    summary = explain_run(root / "run", folder / "low", out=root / "explain", rows=6)
    assert summary["rows"] == 6 and "time-frequency" in summary["headline"]
    outputs = run.outputs(run.encode(run.source(folder / "low"))[0])
    assert summary["completeness_max_abs_error"] < 0.1 * max(1.0, outputs.abs().max().item())  # IG adds up
    maps = load_file(str(root / "explain" / "heatmaps.safetensors"))["integrated_gradients"]
    s = run.preprocess
    assert maps.shape == (6, s["n_mels"], 1 + s["samples"] // s["hop"])
    centres = mel_band_centres(s["rate"], s["n_fft"], s["n_mels"], s["fmin"], s["fmax"])
    near_the_tone = np.abs(maps[:, (centres > 150) & (centres < 600)]).sum() / (centres[(centres > 150) & (centres < 600)].size)
    far_above = np.abs(maps[:, centres > 2000]).sum() / centres[centres > 2000].size
    assert near_the_tone > far_above  # per band, more heat around 300 Hz than above 2 kHz
    page = (root / "explain" / "explain.html").read_text()
    assert "Integrated Gradients" in page and "<img" in page
    assert (root / "explain" / "explanations.csv").read_text().splitlines()[0] == "clip,prediction,peak_hz,peak_seconds"


def test_compress_distills_and_quantizes_a_sound_run(tone_run):
    import json

    from scaletrain.compress import compress_run

    root, folder, _ = tone_run
    compress_run(root / "run", folder, root / "compressed", distill=0.5, quantize="int8")
    variants = json.loads((root / "compressed" / "compress.json").read_text())["variants"]
    assert set(variants) == {"original", "distilled", "int8"}
    assert variants["distilled"]["parameters"] < variants["original"]["parameters"]
    assert variants["int8"]["same_class_as_original"] >= 0.9  # the features are inside the quantized graph too
    assert scaletrain.load(root / "compressed" / "distilled").predict(folder / "low").prediction.notna().all()


def test_a_sound_run_killed_mid_training_resumes_bit_identically(tone_run, tmp_path):
    """SpecAugment's and the stretches' generator is checkpointed with the weights."""
    from tests.train.test_resume import assert_same_weights, command, kill_at_step, train_here

    _, folder, _ = tone_run
    args = ["--set", "train.epochs=3", "--set", "model.width=8"]
    reference = tmp_path / "reference"
    train_here(command(folder, reference, *args))
    killed = tmp_path / "killed"
    kill_at_step(command(folder, killed, *args), killed, 9)
    train_here(command(folder, killed, *args, "--resume"))
    assert_same_weights(reference, killed)


@pytest.mark.parametrize("change,message", [
    ({"std": [0.0] * 64}, "std"),                     # a zero scale: every prediction the same
    ({"n_mels": 40}, "40 mel bands but 64"),          # the statistics no longer fit the bands
    ({"samples": 10 ** 12}, "samples"),               # a clip length no read could honour
])
def test_a_tampered_sound_run_is_refused_on_load(tone_run, tmp_path, change, message):
    from scaletrain.errors import RunDirError
    from tests.rundir_mutations import with_state_changed

    root, _, _ = tone_run
    with pytest.raises(RunDirError, match=message):
        scaletrain.load(with_state_changed(root / "run", tmp_path / "run", change))


def test_a_served_two_hour_upload_is_refused_before_decoding(tone_run):
    from fastapi.testclient import TestClient

    from scaletrain.serve import load_app

    root, _, _ = tone_run
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", samplerate=1000, channels=1, format="FLAC") as out:  # 2 h of silence, a few KB
        for _ in range(72):
            out.write(np.zeros(100_000, np.float32))
    with TestClient(load_app(root / "run")) as c:
        answer = c.post("/predict", content=buffer.getvalue(), headers={"content-type": "audio/flac"})
        assert answer.status_code == 413 and "lasts 120 minutes" in answer.json()["error"]
        assert c.get("/health").status_code == 200  # the server is fine after it


def test_a_search_and_two_ranks_take_sound_clips(tone_run, tmp_path):
    import json

    import pandas as pd

    from scaletrain.api import tune

    _, folder, _ = tone_run
    tune(str(folder), search="random", trials=2, out=tmp_path / "search", sets=["train.epochs=2"],
                    verbose=False)
    board = pd.read_csv(tmp_path / "search" / "leaderboard.csv")
    assert len(board) == 3 and set(board["state"]) == {"COMPLETE"}
    assert scaletrain.load(tmp_path / "search" / "best").modality.name == "audio"
    done = warm_cli.run("train", folder, "--out", tmp_path / "dp", "--nproc-per-node", "2", "--set", "train.epochs=2",
                        "--set", "model.width=4", "--quiet", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "dp" / "metrics.json").read_text())["distributed"]["ranks"] == 2


def test_a_listing_of_paths_trains_predicts_and_evaluates(tone_run, tmp_path):
    import pandas as pd

    root, folder, _ = tone_run
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    listing = pd.DataFrame({"file": [str(p.relative_to(folder)) for p in files],  # relative to the listing
                            "kind": [p.parent.name for p in files], "take": range(len(files))})
    listing.loc[3, "kind"] = None  # a clip without a label is left out, and said
    listing.to_csv(folder / "listing.csv", index=False)
    run = scaletrain.fit(str(folder / "listing.csv"), "kind", out=tmp_path / "run", epochs=12, model__width=8)
    assert run.modality.name == "audio" and sorted(run.classes) == ["chirp", "high", "low"]
    assert any("1 listed clip(s) without a label in 'kind'" in n for n in run.metrics["notes"])
    assert any("column(s) take of the listing not used as inputs" in n for n in run.metrics["notes"])
    assert run.metrics["test"]["accuracy"] >= 0.8, run.metrics["test"]
    predicted = scaletrain.load(tmp_path / "run").predict(str(folder / "listing.csv"))
    assert list(predicted.columns[:4]) == ["clip", "kind", "take", "prediction"] and len(predicted) == len(files)
    assert (predicted.prediction == predicted.kind).mean() >= 0.8
    scored = scaletrain.load(tmp_path / "run").evaluate(str(folder / "listing.csv"))
    assert scored["accuracy"] >= 0.8
