"""Temperature scaling: fitted on validation rows, kept where it lowers their NLL, applied by
predict, export and serve, and the threshold chosen on the calibrated probabilities."""
import numpy as np
import torch

import scaletrain
from scaletrain.evaluate.calibration import brier, expected_calibration_error, fit_temperature
from tests.test_explain import planted


def test_the_temperature_of_overconfident_logits_is_recovered():
    rng = np.random.default_rng(0)
    true = torch.from_numpy(rng.normal(scale=2.0, size=(4000, 5)))
    y = np.array([rng.choice(5, p=p) for p in torch.softmax(true, dim=1).numpy()])
    assert abs(fit_temperature(true * 3.0, y, "cross_entropy") - 3.0) < 0.2


def test_ece_and_brier_of_perfect_and_hedged_predictions():
    y = np.array([0, 1, 0, 1])
    sure = np.eye(2)[y]
    assert expected_calibration_error(sure, y) == 0 and brier(sure, y) == 0
    hedged = np.full((4, 2), 0.5)
    assert abs(brier(hedged, y) - 0.5) < 1e-12


def test_a_fit_calibrates_lowers_test_ece_and_predict_applies_it(tmp_path):
    # zero-config (an MLP on 7,200 training rows), unblended: a blend averages probabilities, calibrated already
    run = scaletrain.fit(planted(10000), "y", out=tmp_path / "run", train__blend="off")
    c = run.metrics["calibration"]
    assert c["kept"] and c["val_nll_after"] < c["val_nll_before"]
    assert c["test_ece_after"] < c["test_ece_before"]
    loaded = scaletrain.load(tmp_path / "run")
    t = loaded.preprocess["target"]["temperature"]
    rows = planted(50, seed=9)
    inputs, _ = loaded.encode(loaded.source(rows))
    expected = torch.softmax(loaded.outputs(inputs) / t, dim=1).numpy()
    assert np.allclose(loaded.predict(rows)[["proba_no", "proba_yes"]].to_numpy(), expected, atol=1e-6)
    assert loaded.config.train.calibration == "temperature"


def test_calibration_none_leaves_the_probabilities_alone(tmp_path):
    run = scaletrain.fit(planted(1000), "y", out=None, model="mlp", epochs=3, sets=["train.calibration=none"])
    assert "temperature" not in run.preprocess["target"] and "calibration" not in run.metrics
