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


@pytest.mark.parametrize("kind", ["table", "image"])
def test_a_run_written_by_the_old_layout_predicts_what_it_predicted(kind):
    run = scaletrain.load(FIXTURES / f"{kind}_run")
    expected = pd.read_csv(FIXTURES / f"{kind}_predictions.csv")
    if kind == "table":
        rows = expected.drop(columns=[c for c in expected.columns if c == "prediction" or c.startswith("proba_")])
        predicted = run.predict(rows)
    else:
        predicted = run.predict(np.load(FIXTURES / "image_inputs.npz", allow_pickle=False)["images"])
    _same(predicted, expected)
