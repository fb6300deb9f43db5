"""DP-SGD (train.privacy.epsilon): the ε recorded is the accountant's for the steps taken, a
membership-inference attack learns less, BatchNorm is replaced, and what does not combine is refused."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import RDPAccountant
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.errors import ConfigError

OVERFIT = ["data.val_fraction=0", "train.early_stopping=0", "model.width=256", "train.weight_decay=0",
           "train.batch_size=32", "train.calibration=none"]


def noisy_rows(n: int, seed: int) -> pd.DataFrame:
    """Two of 20 columns decide the label, through heavy noise: a wide MLP memorizes the rest."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(20)})
    frame["y"] = np.where(frame.x0 + frame.x1 + rng.normal(scale=1.5, size=n) > 0, "a", "b")
    return frame


def row_losses(run, frame: pd.DataFrame) -> np.ndarray:
    proba = run.predict(frame.drop(columns="y"))[[f"proba_{c}" for c in run.classes]].to_numpy()
    truth = pd.Categorical(frame["y"], categories=run.classes).codes
    return -np.log(np.clip(proba[np.arange(len(frame)), truth], 1e-12, 1.0))


def attack_auc(run, members: pd.DataFrame, others: pd.DataFrame) -> float:
    """The loss-threshold attack (Yeom et al. 2018): a lower loss says 'was trained on'."""
    scores = -np.r_[row_losses(run, members), row_losses(run, others)]
    return roc_auc_score(np.r_[np.ones(len(members)), np.zeros(len(others))], scores)


def test_epsilon_one_leaves_a_membership_attack_near_chance_and_records_the_accountant(tmp_path):
    members, others = noisy_rows(300, 0), noisy_rows(300, 1)
    plain = scaletrain.fit(members, "y", test=others, model="mlp", epochs=120, sets=OVERFIT)
    private = scaletrain.fit(members, "y", test=others, model="mlp", epochs=120, out=tmp_path / "dp",
                             sets=OVERFIT + ["train.privacy.epsilon=1"])
    plain_auc, private_auc = attack_auc(plain, members, others), attack_auc(private, members, others)
    assert plain_auc > 0.7 and abs(private_auc - 0.5) < 0.08 and abs(private_auc - 0.5) < abs(plain_auc - 0.5) / 3
    spent = scaletrain.load(tmp_path / "dp").metrics["privacy"]
    # every epoch ran (no early stopping, no time limit), each its 1/q Poisson draws, none empty
    assert spent["steps"] == spent["planned_steps"] == 120 * round(1 / spent["sample_rate"])
    assert spent["delta"] < 1 / 300
    accountant = RDPAccountant()  # the accountant recomputed from what the run says it did
    accountant.history = [(spent["noise_multiplier"], spent["sample_rate"], spent["steps"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert accountant.get_epsilon(spent["delta"]) == pytest.approx(spent["epsilon"], rel=1e-6)
    assert 0.9 <= spent["epsilon"] <= 1.0
    assert "ε" in (tmp_path / "dp" / "report.html").read_text()
    shown = CliRunner().invoke(app, ["info", str(tmp_path / "dp")])
    assert shown.exit_code == 0 and "DP-SGD" in shown.output


def test_a_private_conv_net_has_no_batchnorm_and_predicts_after_loading(tmp_path):
    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype(np.uint8)[..., None]
    scaletrain.fit(images, y=digits.target, out=tmp_path / "run", model="cnn", epochs=8,
                   sets=["train.privacy.epsilon=8"])
    run = scaletrain.load(tmp_path / "run")
    assert run.config.model.norm == "group"
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in run.model.modules())
    assert run.metrics["privacy"]["epsilon"] <= 8 and run.metrics["test"]["accuracy"] > 0.25  # chance: 0.1
    assert len(run.predict(images[:5])) == 5


def test_what_dp_sgd_does_not_combine_with_is_refused():
    with pytest.raises(ConfigError, match="grad_accum"):
        scaletrain.fit(noisy_rows(200, 0), "y", model="mlp", epochs=1,
                       sets=["train.privacy.epsilon=1", "train.grad_accum=2"])


def test_preprocessing_can_be_fitted_on_a_public_sample(tmp_path):
    public = noisy_rows(100, 7).assign(x0=lambda f: f.x0 + 10)  # shifted: the fitted mean must come from it
    public.to_csv(tmp_path / "public.csv", index=False)
    run = scaletrain.fit(noisy_rows(300, 0), "y", model="mlp", epochs=2,
                         sets=["train.privacy.epsilon=2", f"data.preprocess_from={tmp_path / 'public.csv'}"])
    centers = {c["name"]: c["center"] for c in run.preprocess["numeric"]}
    assert centers["x0"] > 8 and abs(centers["x1"]) < 1
    assert any("public sample" in note for note in run.metrics["notes"])


def test_free_text_is_refused_with_what_to_do():
    from tests.test_text_columns import articles

    with pytest.raises(ConfigError, match="free-text"):
        scaletrain.fit(articles(100), "topic", model="mlp", epochs=1, sets=["train.privacy.epsilon=1"])
