import numpy as np
import pandas as pd
import pytest
import torch

import scaletrain
from scaletrain.errors import ConfigError
from scaletrain.train.losses import build_loss


def test_label_smoothing_raises_the_loss_of_a_confident_right_answer():
    logits, y = torch.tensor([[10.0, -10.0]]), torch.tensor([0])
    assert build_loss("cross_entropy", "binary", 0.1)(logits, y) > build_loss("cross_entropy", "binary", 0.0)(logits, y) + 0.1


def test_mae_and_huber_resist_outliers_that_pull_mse():
    out, y = torch.zeros(10, 1), torch.tensor([0.0] * 9 + [100.0])
    mse, mae, huber = (build_loss(n, "regression")(out, y) for n in ("mse", "mae", "huber"))
    assert mse == pytest.approx(1000) and mae == pytest.approx(10) and huber == pytest.approx(9.95)


def test_loss_must_fit_the_task():
    with pytest.raises(ConfigError, match="regression"):
        build_loss("mse", "multiclass")
    with pytest.raises(ConfigError, match="binary"):
        build_loss("bce", "multiclass")


def test_bce_trains_a_binary_model_with_one_output(mixed_frame):
    run = scaletrain.fit(mixed_frame, "label", out=None, loss="bce", model="mlp", epochs=20)
    assert run.spec.n_out == 1 and run.metrics["test"]["accuracy"] > 0.75
    proba = run.predict(mixed_frame.iloc[:5])[["proba_neg", "proba_pos"]].to_numpy()
    assert np.allclose(proba.sum(1), 1)


def test_weight_decay_shrinks_weights():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 8)), columns=list("abcdefgh")).assign(y=lambda f: f.a - f.b)
    norms = {}
    for wd in (0.0, 1.0):
        run = scaletrain.fit(frame, "y", out=None, model="linear", optimizer="sgd", lr=0.05, weight_decay=wd,
                             epochs=30, early_stopping=0)
        norms[wd] = run.model.body[0].weight.norm().item()
    assert norms[1.0] < 0.7 * norms[0.0]
