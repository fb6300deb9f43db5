import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

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
