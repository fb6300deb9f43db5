import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from scaletrain import ScaleClassifier, ScaleRegressor


def test_classifier_in_a_pipeline_and_cross_validation():
    x, y = load_iris(return_X_y=True)
    pipe = make_pipeline(FunctionTransformer(np.log1p), ScaleClassifier(seed=0))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert len(scores) == 3 and scores.mean() > 0.85


def test_classifier_api_matches_sklearn_conventions():
    x, y = load_iris(return_X_y=True)
    clf = ScaleClassifier(epochs=30, lr=0.01).fit(x, y)
    assert clf.get_params()["lr"] == 0.01 and clone(clf).set_params(lr=0.1).lr == 0.1
    proba = clf.predict_proba(x[:5])
    assert proba.shape == (5, 3) and np.allclose(proba.sum(1), 1)
    assert list(clf.classes_) == [0, 1, 2] and clf.predict(x).dtype == clf.classes_.dtype
    assert clf.score(x, y) > 0.85


def test_regressor_scores_r2():
    x, y = load_diabetes(return_X_y=True)
    reg = ScaleRegressor(epochs=40, seed=0).fit(x[:350], y[:350])
    assert reg.score(x[350:], y[350:]) > 0.3


@parametrize_with_checks([ScaleClassifier(epochs=10), ScaleRegressor(epochs=10)])
def test_scikit_learn_conformance(estimator, check):
    """scikit-learn's own estimator checks, every one (NaN is allowed by tag: it is imputed)."""
    check(estimator)


def test_tiny_data_trains_on_every_row_and_recovers_the_line():
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([2.0, 4.0, 6.0])
    reg = ScaleRegressor(model="linear", optimizer="gd", epochs=300).fit(x, y)
    assert reg.run_.metrics["train"] and not reg.run_.metrics["val"]  # no row held out, metrics labelled "train"
    predicted = reg.predict(np.array([[1.0], [3.0]]))
    w, b = (predicted[1] - predicted[0]) / 2, predicted[0] - (predicted[1] - predicted[0]) / 2
    assert abs(w - 2) < 0.02 and abs(b) < 0.05
