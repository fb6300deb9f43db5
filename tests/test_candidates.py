"""Zero-config's choice between candidates on small tables: by cross-validation, the bigger
model kept only when it wins by more than the folds' noise."""
import numpy as np
import pandas as pd

import scaletrain


def linear_rule(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = x @ np.array([1.5, -2.0, 0.5, 0.0, 1.0]) + rng.normal(scale=1.0, size=n)
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(5)]).assign(y=y)


def interaction(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=np.where(x[:, 0] * x[:, 1] > 0, "same", "other"))


CV = {"epochs": 40}  # the default chooses by cross-validation; 40 epochs: enough for both rules


def test_cross_validation_keeps_the_linear_model_on_a_linear_rule():
    run = scaletrain.fit(linear_rule(), "y", out=None, train__blend="off", **CV)  # the choice alone
    cv = run.metrics["candidates_cv"]
    assert run.metrics["model"] == "linear" and set(cv) == {"linear", "mlp", "boosted"}
    assert cv["linear"]["folds"] == 10 and cv["linear"]["loss_std"] > 0  # under 500 rows: 5 folds, twice
    assert any("cross-validated loss" in n for n in run.metrics["notes"])


def test_cross_validation_keeps_the_mlp_on_an_interaction():
    run = scaletrain.fit(interaction(), "y", out=None, train__boosting="off", train__blend="off", **CV)
    cv = run.metrics["candidates_cv"]
    assert run.metrics["model"] == "mlp"
    assert cv["mlp"]["loss"] < cv["linear"]["loss"] and cv["mlp"]["score"] > cv["linear"]["score"] + 0.2
    assert run.metrics["test"]["accuracy"] > 0.85


def test_choose_by_validation_uses_the_one_split_without_folds():
    run = scaletrain.fit(linear_rule(), "y", out=None, epochs=5, train__choose_by="validation")
    assert "candidates_cv" not in run.metrics and set(run.metrics["candidates"]) == {"linear", "mlp", "boosted"}


def test_the_lowest_loss_among_candidates_that_beat_the_simplest_is_kept():
    from types import SimpleNamespace

    from scaletrain.fitting.candidates import choose

    def trained(*losses):
        return [SimpleNamespace(best_val_loss=loss, name=i) for i, loss in enumerate(losses)]

    assert choose(trained(1.0, 0.9, 0.8)).name == 2  # trees after the MLP: the lower loss, not the earlier
    assert choose(trained(1.0, 0.8, 0.9)).name == 1
    assert choose(trained(1.0, 0.9, 0.97)).name == 1  # the trees do not beat the linear model by 5%
    assert choose(trained(1.0, 0.97, 0.99)).name == 0  # nothing beats the simplest by more than 5%


def test_on_validation_rows_only_a_candidate_stopped_on_them_is_blended():
    """The members' validation outputs are optimistic where early stopping chose on them: a blend
    is weighed there against an MLP or trees, never against a linear model that did not."""
    linear = scaletrain.fit(linear_rule(), "y", out=None, epochs=5, train__choose_by="validation")
    assert linear.metrics["model"] == "linear" and "blend" not in linear.metrics
    mlp = scaletrain.fit(interaction(), "y", out=None, epochs=40, train__choose_by="validation",
                         train__boosting="off")
    assert mlp.metrics["blend"]["weights_on"] == "validation"


def test_a_linear_model_is_blended_on_validation_rows_only_with_what_was_not_stopped_on_them():
    from types import SimpleNamespace

    from scaletrain.fitting.candidates import blendable

    def trained(name, optimizer, early_stopping):
        return SimpleNamespace(run=SimpleNamespace(config=SimpleNamespace(
            model=SimpleNamespace(name=name), train=SimpleNamespace(optimizer=optimizer, early_stopping=early_stopping))))

    linear, mlp, rnn = trained("linear", "lbfgs", 0), trained("mlp", "adamw", 20), trained("rnn", "adamw", 0)
    trees = trained("boosted", "auto", 0)
    assert blendable(linear, [linear, mlp, rnn, trees]) == [linear, rnn]  # fixed epochs: as honest as L-BFGS
    assert blendable(mlp, [linear, mlp, rnn, trees]) == [linear, mlp, rnn, trees]  # itself stopped on them
    assert blendable(linear, [linear, mlp]) == [linear]  # nothing to blend: the linear model alone, as before
