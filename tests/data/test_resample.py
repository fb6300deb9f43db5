"""Resampling for class imbalance touches the training rows only."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import scaletrain
from scaletrain.config import Config
from scaletrain.errors import ConfigError
from scaletrain.fitting.pipeline import resampled
from scaletrain.modalities import load_source, prepare


def imbalanced(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.1
    x = rng.normal(size=(n, 2)) + y[:, None]
    color = rng.choice(["red", "green", "blue", "grey"], size=n)
    city = np.array([f"c{i}" for i in rng.integers(0, 30, size=n)])  # embedded (high cardinality)
    return pd.DataFrame(x, columns=["a", "b"]).assign(color=color, city=city, y=np.where(y, "rare", "common"))


@pytest.mark.parametrize("method", ["oversample", "undersample", "smote"])
def test_resampling_balances_the_training_rows_and_leaves_validation_and_test_alone(method):
    frame = imbalanced()
    plain = scaletrain.fit(frame, "y", out=None, epochs=2, model="linear")
    resampled = scaletrain.fit(frame, "y", out=None, epochs=2, model="linear", data__resample=method)
    assert resampled.metrics["data"]["val_rows"] == plain.metrics["data"]["val_rows"]
    assert resampled.metrics["data"]["test_rows"] == plain.metrics["data"]["test_rows"]
    assert resampled.metrics["val"] and resampled.metrics["test"]
    note = next(n for n in resampled.metrics["notes"] if n.startswith("training rows resampled"))
    before, after = (json.loads(part) for part in note.split(": class counts ")[1].split(";")[0].split(" -> "))
    assert before[0] != before[1] and after[0] == after[1]  # balanced, training rows only
    assert (sum(after) > sum(before)) if method != "undersample" else (sum(after) < sum(before))


def test_resampling_a_regression_target_is_refused():
    frame = imbalanced().assign(y=np.arange(600.0))
    with pytest.raises(ConfigError, match="no meaning for regression"):
        scaletrain.fit(frame, "y", out=None, epochs=1, data__resample="oversample")


@pytest.mark.parametrize("method", ["oversample", "undersample", "smote"])
def test_validation_and_test_rows_are_the_same_objects_before_and_after(method):
    prepared = prepare(load_source(imbalanced()), None, Config().data, 0)
    out = resampled(prepared, method, seed=0)
    assert out.val_y is prepared.val_y and all(a is b for a, b in zip(out.val_inputs, prepared.val_inputs))
    assert out.test_source is prepared.test_source and out.val_source is prepared.val_source
    assert len(torch.unique(torch.bincount(out.train_y))) == 1 and len(out.train_inputs) == 2  # categories kept
    assert out.train_inputs[1].dtype == torch.int64 and out.train_inputs[0].dtype == torch.float32
