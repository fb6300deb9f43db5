import json

import numpy as np
import pandas as pd
import pytest
import torch

import scaletrain
from scaletrain.errors import ConfigError, TargetError

RUN_FILES = {"config.yaml", "model.safetensors", "preprocess.json", "metrics.json", "history.csv", "report.html"}


def test_fit_writes_the_run_directory_contract(tmp_path, mixed_frame, fast):
    run = scaletrain.fit(mixed_frame, "label", out=tmp_path / "run", model="mlp", **fast)
    assert RUN_FILES <= {p.name for p in (tmp_path / "run").iterdir()}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "binary" and {"accuracy", "precision_macro", "recall_macro", "f1_macro"} <= set(metrics["test"])
    assert metrics["epochs"] == 5 and metrics["train_seconds"] > 0
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(history.columns[:4]) == ["epoch", "step", "train_loss", "val_loss"] and len(history) == 5
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "auto" not in config.replace("data:\n  target", "")  # every default made explicit
    assert run.metrics["test"]["accuracy"] > 0.75


def test_predict_on_raw_test_rows_reproduces_test_metrics_exactly(tmp_path, mixed_frame, fast):
    train, test = mixed_frame.iloc[:220], mixed_frame.iloc[220:]
    test.to_csv(tmp_path / "test.csv", index=False)
    run = scaletrain.fit(train, "label", test=tmp_path / "test.csv", out=tmp_path / "run", **fast)
    loaded = scaletrain.load(tmp_path / "run")
    assert loaded.evaluate(tmp_path / "test.csv") == run.metrics["test"]
    predicted = loaded.predict(tmp_path / "test.csv")
    assert (predicted["prediction"] == test["label"].to_numpy()).mean() == run.metrics["test"]["accuracy"]
    assert np.allclose(predicted[["proba_neg", "proba_pos"]].sum(axis=1), 1.0)


def test_regression_predictions_are_in_target_units(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(price=1000 + 300 * x[:, 0] - 50 * x[:, 1])
    run = scaletrain.fit(frame, "price", out=tmp_path / "r", epochs=30, verbose=False)
    assert run.task == "regression" and run.metrics["test"]["r2"] > 0.9
    assert set(run.metrics["test"]) == {"mse", "rmse", "mae", "r2"}
    assert abs(run.predict(frame.iloc[:50])["prediction"].mean() - frame["price"].iloc[:50].mean()) < 100


def test_linear_model_recovers_y_equals_2x():
    x = np.linspace(-1, 1, 200)
    frame = pd.DataFrame({"x": x, "y": 2 * x})
    run = scaletrain.fit(frame, "y", out=None, model="linear", optimizer="gd", lr=0.5, epochs=300,
                         schedule="constant", weight_decay=0.0, data__scale="none", data__clip_quantile=0.0,
                         data__task="regression", early_stopping=0)
    # the model sees the standardized target: undo that to read w and b in y's units
    t = run.preprocess["target"]
    layer = run.model.body[0]
    w, b = layer.weight.item() * t["std"], layer.bias.item() * t["std"] + t["mean"]
    assert w == pytest.approx(2.0, abs=1e-3) and b == pytest.approx(0.0, abs=1e-3)


def test_mlp_784_128_10_with_sgd_momentum_purely_in_config(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    big = np.stack([np.asarray(Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((28, 28))) for im in digits.images])
    np.savez(tmp_path / "digits28.npz", x=big, y=digits.target)
    (tmp_path / "mlp.yaml").write_text(
        "model: {name: mlp, hidden: [128], dropout: 0.0, norm: none, init: kaiming}\n"
        "train: {optimizer: momentum, momentum: 0.9, lr: 0.01, batch_size: 32, epochs: 10, schedule: constant}\n"
        "data: {augment: false}\n")
    run = scaletrain.fit(tmp_path / "digits28.npz", config=tmp_path / "mlp.yaml", out=None)
    linears = [m for m in run.model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 10)]
    assert run.config.train.optimizer == "momentum" and run.config.train.momentum == 0.9
    assert run.metrics["test"]["accuracy"] > 0.95


def test_balanced_class_weights_raise_minority_recall():
    rng = np.random.default_rng(0)
    n = 1200
    x = rng.normal(size=(n, 2))
    y = np.where(x[:, 0] + 0.8 * rng.normal(size=n) > 2.0, "rare", "common")
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(y=y)
    common = dict(out=None, epochs=15, early_stopping=0, seed=1)
    plain = scaletrain.fit(frame, "y", class_weight="none", **common)
    weighted = scaletrain.fit(frame, "y", class_weight="balanced", **common)
    test = frame.iloc[-300:]

    def rare_recall(run):
        p = run.predict(test)["prediction"]
        return ((p == "rare") & (test["y"] == "rare")).sum() / (test["y"] == "rare").sum()
    assert rare_recall(weighted) > rare_recall(plain)


def test_early_stopping_restores_best_epoch_end_to_end(mixed_frame):
    run = scaletrain.fit(mixed_frame, "label", out=None, epochs=200, early_stopping=3, lr=0.05, model="mlp",
                         hidden=[256, 256], dropout=0.0, weight_decay=0.0)
    val_losses = [row["val_loss"] for row in run.history]
    assert len(val_losses) < 200
    assert run.metrics["best_epoch"] == int(np.argmin(val_losses)) + 1 == len(val_losses) - 3


def test_fp16_on_cpu_is_refused_with_advice(mixed_frame):
    with pytest.raises(ConfigError, match="bf16"):
        scaletrain.fit(mixed_frame, "label", out=None, precision="fp16", device="cpu", epochs=1)


def test_bad_target_errors(mixed_frame):
    with pytest.raises(TargetError, match="did you mean 'label'"):
        scaletrain.fit(mixed_frame, "Label_", out=None)
    with pytest.raises(TargetError, match="single class"):
        scaletrain.fit(mixed_frame.assign(label="x"), "label", out=None)
