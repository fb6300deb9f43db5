"""The decision threshold of imbalanced binary tasks, tuned on validation rows for macro F1."""
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

import scaletrain
from scaletrain.evaluate.threshold import tune_threshold


def imbalanced(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """5% positives whose scores overlap the negatives': the best F1 cut is far above 0.5's."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.05
    x = rng.normal(size=(n, 3)) + np.where(y[:, None], [1.5, 1.0, 0.0], 0.0)
    return pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=np.where(y, "yes", "no"))


def test_the_threshold_that_maximizes_the_metric_is_found():
    truth = np.array([0] * 90 + [1] * 10)
    positive = np.concatenate([np.linspace(0.0, 0.3, 90), np.linspace(0.2, 0.4, 10)])
    found = tune_threshold(truth, positive, "f1_macro")
    assert 0.2 < found["threshold"] < 0.31 and found["score"] > found["score_at_half"]
    assert found["score"] == f1_score(truth, positive >= found["threshold"], average="macro")


def test_a_tuned_threshold_raises_macro_f1_and_is_what_predict_applies(tmp_path):
    train, test = imbalanced(seed=0), imbalanced(n=2000, seed=1)
    run = scaletrain.fit(train, "y", test=test, out=tmp_path / "run", epochs=20, model="linear")
    decision = run.metrics["threshold"]
    assert run.config.train.threshold_metric == "f1_macro" and run.config.train.class_weight == "none"
    assert decision["score"] > decision["score_at_half"]
    stored = scaletrain.load(tmp_path / "run")
    assert stored.preprocess["target"]["threshold"] == decision["threshold"]
    predicted = stored.predict(test.drop(columns="y"))
    expected = np.where(predicted["proba_yes"] >= decision["threshold"], "yes", "no")
    assert (predicted["prediction"].to_numpy() == expected).all()  # the threshold, not the argmax
    at_half = np.where(predicted["proba_yes"] >= 0.5, "yes", "no")
    tuned_f1 = f1_score(test["y"], predicted["prediction"], average="macro")
    assert tuned_f1 > f1_score(test["y"], at_half, average="macro") + 0.02  # on rows it never saw
    assert abs(run.metrics["test"]["f1_macro"] - tuned_f1) < 1e-9


def test_balanced_classes_and_regression_keep_the_plain_decision():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    balanced = pd.DataFrame(x, columns=["a", "b"]).assign(y=np.where(x[:, 0] > 0, "p", "n"))
    run = scaletrain.fit(balanced, "y", out=None, epochs=5)
    assert run.config.train.threshold_metric == "none" and "threshold" not in run.preprocess["target"]


def imbalanced_multiclass(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Three classes, the rarest 6%, overlapping: the argmax seldom names the rare one."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.64, 0.30, 0.06])
    x = rng.normal(size=(n, 2)) + np.array([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])[y]
    return pd.DataFrame(x, columns=["a", "b"]).assign(y=np.array(["common", "middle", "rare"])[y])


def test_class_prior_shifts_raise_multiclass_macro_f1_and_are_what_predict_applies(tmp_path):
    train, test = imbalanced_multiclass(seed=0), imbalanced_multiclass(n=3000, seed=1)
    run = scaletrain.fit(train, "y", test=test, out=tmp_path / "run", model="linear", train__optimizer="lbfgs")
    decision = run.metrics["class_bias"]
    assert run.config.train.threshold_metric == "f1_macro" and decision["score"] > decision["score_at_argmax"]
    stored = scaletrain.load(tmp_path / "run")
    assert stored.preprocess["target"]["class_bias"] == decision["class_bias"]
    predicted = stored.predict(test.drop(columns="y"))
    proba = predicted[[f"proba_{c}" for c in stored.classes]].to_numpy()
    shifted = np.array(stored.classes)[(np.log(proba) + np.array(decision["class_bias"])).argmax(axis=1)]
    assert (predicted["prediction"].to_numpy() == shifted).all()
    plain = np.array(stored.classes)[proba.argmax(axis=1)]
    assert f1_score(test["y"], shifted, average="macro") > f1_score(test["y"], plain, average="macro") + 0.02
