"""Run directories written before the layout change still load and predict the same."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaletrain

FIXTURES = Path(__file__).parent / "fixtures"


def _same(predicted: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(predicted.columns) == list(expected.columns)
    assert predicted["prediction"].astype(str).tolist() == expected["prediction"].astype(str).tolist()
    proba = [c for c in expected.columns if c.startswith("proba_")]
    assert proba
    np.testing.assert_allclose(predicted[proba].to_numpy(float), expected[proba].to_numpy(float), rtol=1e-5, atol=1e-7)


def _table_rows(expected: pd.DataFrame):
    return expected.drop(columns=[c for c in expected.columns if c == "prediction" or c.startswith("proba_")])


def _image_rows(expected: pd.DataFrame):
    return np.load(FIXTURES / "image_inputs.npz", allow_pickle=False)["images"]


@pytest.mark.parametrize("name, rows", [("table", _table_rows), ("image", _image_rows)])
def test_a_run_written_by_the_old_layout_predicts_what_it_predicted(name, rows):
    run = scaletrain.load(FIXTURES / f"{name}_run")
    expected = pd.read_csv(FIXTURES / f"{name}_predictions.csv")
    _same(run.predict(rows(expected)), expected)
