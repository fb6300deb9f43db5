import numpy as np
import pytest
import torch
from PIL import Image

import scaletrain
from scaletrain.config import make_config
from scaletrain.modalities.image import IMAGE


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    for split, rows in (("train", range(0, 500)), ("test", range(500, 650))):
        for i in rows:
            path = root / split / str(digits.target[i]) / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(path)
    return root


def test_image_folder_run_predicts_raw_images_exactly_as_evaluated(digit_folders, tmp_path):
    run = scaletrain.fit(digit_folders / "train", test=digit_folders / "test", out=tmp_path / "run", epochs=8)
    assert run.config.model.name == "resnet" and run.metrics["test"]["accuracy"] > 0.75
    loaded = scaletrain.load(tmp_path / "run")
    assert loaded.evaluate(digit_folders / "test") == run.metrics["test"]
    pred = loaded.predict(digit_folders / "test")
    truth = [p.split("/")[-2] for p in pred["image"]]
    assert (pred["prediction"].astype(str) == truth).mean() == run.metrics["test"]["accuracy"]


def test_augmentation_is_on_by_default_and_off_with_data_augment_false():
    x = torch.randint(0, 255, (16, 1, 8, 8), dtype=torch.uint8)
    on = IMAGE.train_transform(make_config(None, None))(x, 0)
    off = IMAGE.train_transform(make_config(None, ["data.augment=false"]))(x, 0)
    assert torch.equal(off, x.float() / 255) and not torch.allclose(on, off)


def test_init_from_takes_an_earlier_image_runs_backbone_and_a_new_head(tmp_path):
    from sklearn.datasets import load_digits

    from scaletrain.rundir import RunDir

    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    first, second = digits.target < 5, digits.target >= 5
    scaletrain.fit(images[first], y=digits.target[first], out=tmp_path / "a", model="cnn", epochs=2)
    run = scaletrain.fit(images[second], y=digits.target[second], out=tmp_path / "b", model="cnn", epochs=2,
                         sets=[f"model.init_from={tmp_path / 'a'}"])
    weights, trained = RunDir(tmp_path / "a").read_weights(), RunDir(tmp_path / "b").read_weights()
    note = next(n for n in run.metrics["notes"] if "model.init_from" in n)
    new = note.split("new (")[1].rstrip(")").split(", ")
    assert f"{len(weights) - 2} tensors loaded, 2 new" in note
    # the output layer is new although its shape (5 classes) would fit
    assert len(new) == 2 and all(weights[n].shape == trained[n].shape for n in new)


def test_test_time_shifts_average_the_image_and_its_shifts_and_are_chosen_on_validation(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    run = scaletrain.fit(images[:1000], y=digits.target[:1000], out=tmp_path / "run", model="cnn", epochs=3)
    shifts = run.metrics["test_shifts"]
    assert shifts["kept"] == (shifts["val_shifted"] > shifts["val_plain"]) and shifts["views"] == 3
    assert run.config.model.test_shifts == ("on" if shifts["kept"] else "off")
    assert any(n.startswith("test-time shifts") for n in run.metrics["notes"])
    loaded = scaletrain.load(tmp_path / "run")
    assert loaded.model.shifted_views == shifts["kept"]  # the saved config rebuilds the decision
    model = loaded.model.eval()
    x = torch.rand(6, 1, 8, 8)
    left, right = torch.zeros_like(x), torch.zeros_like(x)
    left[..., :-1], right[..., 1:] = x[..., 1:], x[..., :-1]
    with torch.no_grad():
        model.shifted_views = False
        by_hand = (model(x) + model(left) + model(right)) / 3
        model.shifted_views = True
        assert torch.allclose(model(x), by_hand, atol=1e-5)
        model.train()
        assert model(x).shape == by_hand.shape  # training sees each image once


def test_auto_precision_trains_a_conv_net_in_bf16_where_the_cpu_has_amx_and_predicts_in_fp32(monkeypatch, tmp_path):
    from sklearn.datasets import load_digits

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)  # slower without AMX, still bf16
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    seen = []
    run = scaletrain.fit(images[:400], y=digits.target[:400], out=tmp_path / "run", model="cnn", epochs=2)
    assert run.config.train.precision == "bf16" and any(n.startswith("trained in bf16") for n in run.metrics["notes"])
    loaded = scaletrain.load(tmp_path / "run")
    loaded.model.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    proba = loaded.predict(images[400:420])
    assert seen and set(seen) == {torch.float32}  # not under autocast: what the ONNX graph computes
    assert len(proba) == 20


def test_a_fits_last_steps_score_the_validation_rows_once_per_view_setting(monkeypatch, tmp_path):
    """Test-time shifts, the temperature and the validation metrics all read the validation
    rows' outputs of one model: they are computed once with the views off and once on."""
    from sklearn.datasets import load_digits

    from scaletrain.run import Run

    calls, forward = [], Run._outputs

    def counted(self, inputs):
        calls.append((len(inputs[0]), getattr(self.model, "shifted_views", None)))
        return forward(self, inputs)

    monkeypatch.setattr(Run, "_outputs", counted)
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    run = scaletrain.fit(images[:600], y=digits.target[:600], out=tmp_path / "run", model="cnn", epochs=1)
    n_val = run.metrics["data"]["val_images"]
    assert run.metrics["calibration"]["kept"] is not None and run.metrics["val"]
    after_training = [c for c in calls if c[0] == n_val and c[1] is not None]  # the epochs' scoring: undecided
    assert sorted(after_training) == [(n_val, False), (n_val, True)]
    assert list(run.metrics["seconds"]) == ["read", "size", "train", "choose", "decide", "evaluate"]
    assert all(s >= 0 for s in run.metrics["seconds"].values()) and run.metrics["seconds"]["train"] > 0
    x = torch.rand(5, 1, 8, 8)
    calls.clear()
    with run.outputs_kept():
        first, again, other = run.outputs((x,)), run.outputs((x.clone(),)), run.outputs((x + 1,))
        assert len(calls) == 2 and torch.equal(first, again) and not torch.equal(first, other)
        x.mul_(0.5)  # changed in place: not the inputs seen
        assert not torch.equal(run.outputs((x,)), first) and len(calls) == 3
    run.outputs((x,))
    assert len(calls) == 4  # nothing is kept outside the block
