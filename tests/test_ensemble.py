"""Bagging: the cross-validation's fold models averaged into one model, saved and loaded as one."""
import numpy as np
import pandas as pd
import torch

import scaletrain
from scaletrain.models.ensemble import Ensemble
from scaletrain.tasks.classification import probabilities


def interaction(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=np.where(x[:, 0] * x[:, 1] > 0, "same", "other"))


def test_the_ensemble_averages_probabilities_and_values():
    torch.manual_seed(0)
    members = [torch.nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(8, 4)
    mean_proba = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
    assert torch.allclose(torch.softmax(Ensemble(members, "softmax")(x), 1), mean_proba, atol=1e-6)
    binary = [torch.nn.Linear(4, 1) for _ in range(3)]
    mean_p = torch.stack([torch.sigmoid(m(x)) for m in binary]).mean(0)
    assert torch.allclose(torch.sigmoid(Ensemble(binary, "sigmoid")(x)), mean_p, atol=1e-6)
    assert torch.allclose(Ensemble(binary, "mean")(x), torch.stack([m(x) for m in binary]).mean(0), atol=1e-6)


def test_an_ensembles_predict_is_the_mean_of_its_members_and_survives_saving(tmp_path):
    train, test = interaction(seed=0), interaction(n=200, seed=1)
    run = scaletrain.fit(train, "y", test=test, out=tmp_path / "run", epochs=30, train__ensemble="on",
                         train__calibration="none", train__boosting="off")  # the plain mean (a temperature would sharpen or soften it)
    info = run.metrics["ensemble"]
    assert info["kept"] and len(info["members"]) == 10  # under 500 rows: 5 folds cut twice
    assert all(m["train_rows"] < len(train) for m in info["members"])
    stored = scaletrain.load(tmp_path / "run")
    assert isinstance(stored.model, Ensemble) and len(stored.model.members) == 10
    source = stored.source(test.drop(columns="y"))
    inputs, _ = stored.encode(source)
    members = torch.stack([probabilities(m(*inputs), "cross_entropy") for m in stored.model.members])
    predicted = stored.predict(test.drop(columns="y"))
    names = [f"proba_{c}" for c in stored.classes]
    np.testing.assert_allclose(predicted[names].to_numpy(), members.mean(0).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.predict(test.drop(columns="y"))[names].to_numpy(), predicted[names].to_numpy(),
                               rtol=1e-5, atol=1e-6)


def test_auto_keeps_the_ensemble_only_when_validation_says_so():
    for seed in (0, 1):
        run = scaletrain.fit(interaction(seed=seed), "y", out=None, epochs=30, seed=seed, train__boosting="off")
        info = run.metrics["ensemble"]
        assert run.metrics["model"] == "mlp"  # an interaction: the linear model cannot win
        losses = info["val_loss"]
        assert info["kept"] == (losses["ensemble"] < losses["single"]) == isinstance(run.model, Ensemble)
        assert run.config.train.ensemble == ("on" if info["kept"] else "off")


def test_a_refit_linear_model_is_not_bagged():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=np.where(x @ [1.0, -1.0, 0.5] > 0, "p", "n"))
    run = scaletrain.fit(frame, "y", out=None, epochs=20)
    assert run.metrics["model"] == "linear" and "ensemble" not in run.metrics
    assert run.config.train.optimizer == "lbfgs" and run.metrics["stopped_by"] == "convergence"
    assert any("refit on training + validation rows" in n for n in run.metrics["notes"])
