import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """A small table with every column role and a binary target that depends on them."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    flag = rng.choice(["yes", "no"], size=n)
    city = np.array([f"city{i}" for i in rng.integers(0, 40, size=n)])
    logit = 2 * x + (color == "red") * 1.5 - (flag == "yes") * 1.0
    frame = pd.DataFrame({
        "id": np.arange(n), "x": x, "color": color, "flag": flag, "city": city,
        "when": pd.date_range("2020-01-01", periods=n, freq="37h").astype(str),
        "constant": 1.0, "label": np.where(logit + rng.normal(scale=0.5, size=n) > 0, "pos", "neg"),
    })
    frame.loc[::17, "x"] = np.nan
    return frame


@pytest.fixture
def fast() -> dict:
    """Overrides that keep a test's training to a second or two."""
    return {"epochs": 5, "verbose": False}
