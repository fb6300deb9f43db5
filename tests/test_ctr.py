"""`--task ctr`: Wide & Deep and DeepFM over ids of high cardinality — an interaction no linear
model can fit is learned, the FM term is the sum over pairs of fields, ids past the table
limit share hashed rows, the exported graph predicts as the run does, and a target that is
not two-valued is refused."""
import numpy as np
import pandas as pd
import pytest
import torch

import scaletrain
from scaletrain.errors import TargetError
from scaletrain.models import clicks
from scaletrain.models.clicks import ClickNet
from scaletrain.models.tabular import mlp_layers
from tests.test_export import onnx_predict, proba_of


def parity_clicks(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A click when the user's and the ad's ids have the same parity: each id alone says
    nothing (a linear model on one-hot ids stays at chance), the pair says everything."""
    rng = np.random.default_rng(seed)
    user, ad = rng.integers(0, 30, n), rng.integers(0, 30, n)
    noise = rng.random(n) < 0.05
    return pd.DataFrame({"user": [f"u{u}" for u in user], "ad": [f"a{a}" for a in ad],
                         "hour": rng.integers(0, 24, n), "click": (((user + ad) % 2 == 0) ^ noise).astype(int)})


@pytest.fixture(scope="module")
def ctr_runs(tmp_path_factory):
    frame = parity_clicks()
    root = tmp_path_factory.mktemp("ctr")
    return {name: scaletrain.fit(frame.iloc[:2400], "click", test=frame.iloc[2400:], out=root / name,
                                 data__task="ctr", model=name, epochs=15)
            for name in ("deepfm", "wide_deep")}


@pytest.mark.parametrize("name", ["deepfm", "wide_deep"])
def test_an_interaction_of_two_ids_is_learned(ctr_runs, name):
    m = ctr_runs[name].metrics
    assert m["task"] == "ctr" and m["test"]["roc_auc"] > 0.9 and "log_loss" in m["test"]
    assert ctr_runs[name].config.train.loss == "bce"  # one logit: what a click probability is


def test_a_linear_model_cannot_and_zero_config_keeps_the_click_models(tmp_path):
    frame = parity_clicks()
    linear = scaletrain.fit(frame.iloc[:2400], "click", test=frame.iloc[2400:], out=None, data__task="binary",
                            model="linear")
    assert linear.metrics["test"]["roc_auc"] < 0.6
    auto = scaletrain.fit(frame.iloc[:2400], "click", test=frame.iloc[2400:], out=None, data__task="ctr", epochs=5,
                          train__boosting="off")
    assert set(auto.metrics["candidates"]) == {"deepfm", "wide_deep"}


def test_the_factorization_machine_term_is_the_sum_over_pairs_of_fields():
    torch.manual_seed(0)
    net = ClickNet(3, [5, 7], 4, 1, mlp_layers(3 + 8, [], 1, "relu", 0.0, "none"), factorized=True)
    dense, codes = torch.randn(6, 3), torch.stack([torch.randint(0, 6, (6,)), torch.randint(0, 8, (6,))], 1)
    vectors = net.fields.embedded(net.fields.codes(codes))
    fields = [dense[:, j:j + 1] * net.dense_vectors[j] for j in range(3)] + vectors
    pairs = sum((fields[a] * fields[b]).sum(1, keepdim=True) for a in range(5) for b in range(a + 1, 5))
    torch.testing.assert_close(net.interactions(dense, vectors), pairs, rtol=1e-4, atol=1e-5)


def test_ids_past_the_table_limit_share_hashed_rows(monkeypatch):
    monkeypatch.setattr(clicks, "HASH_BUCKETS", 100)
    net = ClickNet(1, [10_000, 20], 4, 1, mlp_layers(1 + 8, [], 1, "relu", 0.0, "none"), factorized=False)
    assert [t.num_embeddings for t in net.fields.vectors] == [100, 21]  # bounded, whatever the ids
    out = net(torch.zeros(2, 1), torch.tensor([[9_999, 3], [99, 3]]))
    assert torch.isfinite(out).all() and torch.allclose(out[0], out[1])  # 9,999 and 99 share a row


def test_the_exported_click_model_predicts_as_the_run_does(ctr_runs):
    from scaletrain.export import export_onnx

    run = scaletrain.load(ctr_runs["deepfm"].path)
    rows = parity_clicks(50, seed=3).drop(columns="click")
    rows.loc[0, "user"] = "never-seen"
    out, expected = onnx_predict(export_onnx(run.path), run, rows), run.predict(rows)
    assert (out["label"] == expected["prediction"].to_numpy()).all()
    np.testing.assert_allclose(out["probabilities"], proba_of(expected), atol=1e-5)


def test_a_target_of_more_than_two_values_is_refused():
    frame = parity_clicks(300).assign(click=lambda f: np.arange(len(f)) % 3)
    with pytest.raises(TargetError, match="task ctr needs a target of two values"):
        scaletrain.fit(frame, "click", out=None, data__task="ctr")
