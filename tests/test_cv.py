"""`train --cv K`: disjoint, covering, stratified folds; metrics as mean ± std over the folds."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from scaletrain.api import cross_validate
from scaletrain.cli import app
from scaletrain.errors import ConfigError
from scaletrain.fitting.cv import fold_indices


def test_folds_are_disjoint_cover_every_row_and_keep_the_class_balance():
    y = pd.Series(np.repeat(["a", "b", "c"], [60, 30, 10]))
    folds = fold_indices(y, 5, "multiclass", seed=0)
    joined = np.concatenate(folds)
    assert len(joined) == len(y) and sorted(joined) == list(range(len(y)))  # disjoint and covering
    for held in folds:
        assert y.iloc[held].value_counts().to_dict() == {"a": 12, "b": 6, "c": 2}
    assert [list(f) for f in folds] == [list(f) for f in fold_indices(y, 5, "multiclass", seed=0)]
    assert [list(f) for f in folds] != [list(f) for f in fold_indices(y, 5, "multiclass", seed=1)]


def test_a_class_smaller_than_the_fold_count_is_refused_by_name():
    y = pd.Series(["a"] * 20 + ["rare"] * 2)
    with pytest.raises(ConfigError, match="class 'rare' has only 2"):
        fold_indices(y, 3, "binary")


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    data = load_breast_cancer(as_frame=True).frame.sample(300, random_state=0)
    path = tmp_path_factory.mktemp("cv") / "cancer.csv"
    data.to_csv(path, index=False)
    return path


def test_cross_validation_reports_every_folds_test_metrics_and_their_mean_and_std(cancer):
    result = cross_validate(str(cancer), "target", k=3, epochs=15)
    assert result["k"] == 3 and result["task"] == "binary" and len(result["folds"]) == 3
    accuracies = [fold["accuracy"] for fold in result["folds"]]
    assert result["mean"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert result["std"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
    assert result["mean"]["accuracy"] > 0.85


def test_cli_cv_prints_mean_and_std_and_writes_cv_json(cancer, tmp_path):
    result = CliRunner().invoke(app, ["train", str(cancer), "--target", "target", "--cv", "2", "--quiet",
                                      "--out", str(tmp_path / "cv"), "--set", "train.epochs=10"])
    assert result.exit_code == 0, result.output
    assert "2-fold cross-validation" in result.output and "accuracy" in result.output
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert len(saved["folds"]) == 2 and set(saved["mean"]) == set(saved["std"])


def test_image_data_is_refused_with_what_to_do_instead(tmp_path):
    from scaletrain.datasets import write_digits_folder

    with pytest.raises(ConfigError, match="--cv works on tables.*--test"):
        cross_validate(str(write_digits_folder(tmp_path / "digits")), k=2)
