"""`scaletrain compress`: distillation into a quarter of the parameters, structured pruning that
really removes units, int8 that predicts as float does, all measured side by side."""
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.compress import compress_run
from scaletrain.compress.distill import parameters
from scaletrain.compress.measure import Variant, recommend
from scaletrain.compress.prune import pruned
from scaletrain.errors import ExportError
from scaletrain.train.losses import distillation_loss


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    d = load_digits()
    path = tmp_path_factory.mktemp("compress") / "digits.npz"
    np.savez(path, x=(d.images * 16).clip(0, 255).astype(np.uint8)[..., None], y=d.target)
    return path


@pytest.fixture(scope="module")
def mlp_run(digits):
    out = digits.parent / "mlp"
    scaletrain.fit(str(digits), out=out, model="mlp", epochs=15, sets=["model.hidden=[128,128]"])
    return out


def test_compress_writes_each_variant_as_a_run_and_measures_them(mlp_run, digits, tmp_path):
    result = CliRunner().invoke(app, ["compress", str(mlp_run), str(digits), "--out", str(tmp_path / "c"), "--distill",
                                      "0.25", "--prune", "0.5", "--quantize", "int8", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "c" / "compress.json").read_text())
    v = summary["variants"]
    assert set(v) == {"original", "distilled", "pruned", "int8"} and "recommended:" in result.output
    assert v["distilled"]["parameters"] <= v["original"]["parameters"] / 4
    assert v["distilled"]["accuracy"] > 0.85 and v["pruned"]["accuracy"] > 0.85  # few epochs on 1,257 images
    assert v["int8"]["same_class_as_original"] >= 0.99
    assert all(f["ms_per_row"] > 0 and f["latency_ratio_batch"] > 0 for f in v.values())
    for name in ("distilled", "pruned"):  # normal run directories: they load and predict
        run = scaletrain.load(tmp_path / "c" / name)
        assert run.evaluate(str(digits))["accuracy"] > 0.85
    assert (tmp_path / "c" / "int8" / "model.onnx").is_file()


def test_pruning_half_the_neurons_halves_the_first_layer_and_keeps_the_strong_ones(mlp_run):
    run = scaletrain.load(mlp_run)
    linears = [m for m in run.model.body if isinstance(m, torch.nn.Linear)]
    first = linears[0]
    with torch.no_grad():  # half of every hidden layer's neurons dead: pruning must remove exactly those
        for layer, following in zip(linears[:-1], linears[1:]):
            layer.weight[::2], layer.bias[::2] = 0, 0
            following.weight[:, ::2] = 0  # and the next layer reads nothing from them
    inputs, _ = run.encode(run.source(str(mlp_run.parent / "digits.npz")))
    before = run.outputs(inputs)
    smaller, cfg = pruned(run.model, run.config, run.spec, 0.5)
    assert cfg.model.hidden == [64, 64]
    assert smaller.body[0].weight.numel() == first.weight.numel() // 2
    layer = [m for m in smaller.body if isinstance(m, torch.nn.Linear)]
    assert layer[1].weight.shape == (64, 64)  # in and out halved: a quarter
    run.model = smaller.eval()
    torch.testing.assert_close(run.outputs(inputs), before, atol=1e-5, rtol=1e-5)


def test_pruning_a_resnet_removes_channels_consistently(digits, tmp_path):
    run = scaletrain.fit(str(digits), out=tmp_path / "r", model="resnet", epochs=1)
    smaller, cfg = pruned(run.model, run.config, run.spec, 0.5)
    assert cfg.model.width == (run.config.model.width or 16) // 2
    assert parameters(smaller) < 0.35 * parameters(run.model)
    x = torch.zeros((3, 1, 8, 8))
    assert smaller.eval()(x).shape == (3, 10)


def test_the_distillation_loss_pulls_the_student_towards_the_teacher():
    loss = distillation_loss("multiclass", "cross_entropy", temperature=2.0, alpha=1.0)
    teacher = torch.tensor([[4.0, 0.0, 0.0]])
    packed = torch.cat([torch.tensor([[1.0]]), teacher], dim=1)  # the label disagrees; alpha=1 follows the teacher
    assert loss(teacher.clone(), packed) < 1e-6 < loss(torch.zeros((1, 3)), packed)
    hard = distillation_loss("multiclass", "cross_entropy", temperature=2.0, alpha=0.0)
    assert hard(torch.tensor([[0.0, 5.0, 0.0]]), packed) < hard(teacher, packed)


def test_a_variant_is_recommended_only_when_faster_and_within_tolerance():
    def variant(name, ratio, acc):
        return Variant(name, None, None, figures={"latency_ratio_batch": ratio, "ms_per_batch": ratio, "accuracy": acc})

    base = variant("original", 1.0, 0.95)
    assert recommend([base, variant("int8", 1.2, 0.95)], "accuracy", 0.01)["variant"] is None  # slower
    assert recommend([base, variant("pruned", 0.5, 0.90)], "accuracy", 0.01)["variant"] is None  # worse
    assert recommend([base, variant("a", 0.6, 0.945), variant("b", 0.4, 0.944)], "accuracy", 0.01)["variant"] == "b"


def test_a_slow_variant_is_timed_by_fewer_calls_a_round():
    """Latency rounds are bounded by ROUND_SECONDS a variant: a 50 ms batch once a round, not 5 times."""
    import time

    from scaletrain.compress.measure import BATCH_CALLS, ROW_CALLS, _calls

    class Session:
        def __init__(self, seconds):
            self.seconds, self.calls = seconds, 0

        def run(self, outputs, feeds):
            self.calls += 1
            time.sleep(self.seconds)

    slow, fast = Session(0.06), Session(0.0)
    assert _calls(slow, {}, BATCH_CALLS) == 1 and slow.calls == 3  # two to warm, one timed
    assert _calls(fast, {}, ROW_CALLS) == ROW_CALLS


def test_compress_without_a_method_or_on_a_linear_model_says_what_to_do(digits, tmp_path):
    from scaletrain.compress import compress_run

    run = scaletrain.fit(str(digits), out=tmp_path / "lin", model="linear", epochs=1)
    with pytest.raises(ExportError, match="nothing to do"):
        compress_run(run.path, str(digits), tmp_path / "x")
    with pytest.raises(ExportError, match="no smaller form"):
        compress_run(run.path, str(digits), tmp_path / "x", distill=0.25)


@pytest.mark.serial
def test_a_time_limited_run_bounds_its_student_and_fine_tune(digits, tmp_path):
    import time

    from scaletrain.compress import compress_run

    run = scaletrain.fit(str(digits), out=tmp_path / "t", model="mlp", time_limit="3s")
    assert run.config.train.epochs >= 100  # a ceiling the limit stops long before
    started = time.perf_counter()
    summary = compress_run(run.path, str(digits), tmp_path / "c", distill=0.25, prune=0.5)
    assert time.perf_counter() - started < 30  # 3 s for the student, 0.75 s for the fine-tune, plus exports
    assert summary["variants"]["distilled"]["accuracy"] > 0.5  # it learned in its 3 s (chance: 0.1)


@pytest.mark.parametrize("kind", ["table", "text", "image"])
def test_int8_works_on_table_text_and_image_runs(kind, digits, tmp_path):
    """The table graph once declared the default ONNX domain twice and the quantizer refused it."""
    import onnx
    import onnxruntime as ort
    import pandas as pd

    from scaletrain.export import onnx_inputs
    from tests.test_export import mixed_table
    from tests.test_text_columns import articles

    data = {"table": (mixed_table(), "label"), "text": (articles(120), "topic"), "image": (str(digits), None)}[kind]
    if isinstance(data[0], pd.DataFrame):
        path = tmp_path / "data.csv"
        data[0].to_csv(path, index=False)
        data = (str(path), data[1])
    run_dir = tmp_path / "run"
    scaletrain.fit(data[0], data[1], out=run_dir, model="cnn" if kind == "image" else "mlp", epochs=2)
    compressed = tmp_path / "c"
    import logging

    level = logging.getLogger().level
    compress_run(run_dir, data[0], compressed, quantize="int8")
    assert logging.getLogger().level == level  # the quantizer's quiet root logger is put back
    int8 = compressed / "int8" / "model.onnx"
    domains = [entry.domain for entry in onnx.load(str(int8)).opset_import]
    assert len(domains) == len(set(domains))
    run = scaletrain.load(run_dir)
    rows = (run.source(data[0]).frame.head(8) if kind != "image" else np.load(data[0])["x"][:8])
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    feeds = onnx_inputs(run, rows)
    labels = session.run(["label"], feeds)[0]
    assert len(labels) == 8


def test_a_failed_variant_leaves_no_half_written_folder(mlp_run, digits, tmp_path, monkeypatch):
    import scaletrain.compress as compress

    def broken(*args, **kwargs):
        raise ExportError("the quantizer failed")

    monkeypatch.setattr(compress, "quantize_int8", broken)
    with pytest.raises(ExportError):
        compress.compress_run(mlp_run, str(digits), tmp_path / "c", quantize="int8")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock", "original.card.json", "original.onnx"]
