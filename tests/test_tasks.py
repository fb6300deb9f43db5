"""The task registry: what each task says about its targets, losses and outputs."""
import pytest

from scaletrain.errors import ConfigError
from scaletrain.tasks import BINARY, CTR, MULTICLASS, RECOMMEND, REGRESSION, TASKS, task_of
from scaletrain.train.losses import build_loss


def test_the_registry_holds_each_task_once_by_name():
    assert TASKS == {"regression": REGRESSION, "binary": BINARY, "multiclass": MULTICLASS, "recommend": RECOMMEND,
                     "ctr": CTR}
    assert task_of("binary") is BINARY
    with pytest.raises(ConfigError, match="unknown task 'ranking'"):
        task_of("ranking")


def test_outputs_and_headlines_follow_the_task():
    assert REGRESSION.output_size("mse", 0) == 1 and REGRESSION.headline == "r2"
    assert BINARY.output_size("bce", 2) == 1 and BINARY.output_size("cross_entropy", 2) == 2
    assert MULTICLASS.output_size("cross_entropy", 7) == 7 and MULTICLASS.headline == "accuracy"
    assert [t.default_loss for t in (REGRESSION, BINARY, MULTICLASS)] == ["mse", "cross_entropy", "cross_entropy"]
    assert BINARY.thresholded and not MULTICLASS.thresholded and not REGRESSION.classifies


@pytest.mark.parametrize("loss, task, message", [
    ("cross_entropy", "regression", "is for classification; use mse, mae, huber or levels for regression"),
    ("mse", "binary", "is for regression; use cross_entropy"),
    ("bce", "multiclass", "needs a binary target; use cross_entropy for multiclass"),
])
def test_a_loss_the_task_cannot_train_with_is_refused_with_advice(loss, task, message):
    with pytest.raises(ConfigError, match=message):
        build_loss(loss, task)


def test_each_task_computes_its_own_metrics_and_headline_score():
    import numpy as np
    import torch

    r = REGRESSION.metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert r["mse"] == pytest.approx(1 / 3) and r["mae"] == pytest.approx(1 / 3) and r["r2"] == pytest.approx(0.5)
    c = BINARY.metrics(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.array([[.9, .1], [.2, .8], [.6, .4], [.7, .3]]))
    assert c["accuracy"] == 0.75 and c["roc_auc"] == 1.0 and "roc_auc" not in MULTICLASS.metrics(
        np.array([0, 1, 2]), np.array([0, 1, 1]))
    outputs, y = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), torch.tensor([0, 1, 1])
    assert MULTICLASS.score_outputs(outputs, y) == pytest.approx(2 / 3)
    assert BINARY.score_outputs(torch.tensor([[1.5], [-2.0]]), torch.tensor([1, 0])) == 1.0  # one logit (bce)
    assert REGRESSION.score_outputs(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 3.0])) == 1.0


def test_each_task_decides_from_outputs_as_predict_and_the_export_do():
    import numpy as np
    import torch

    value, none = REGRESSION.decide(torch.tensor([[0.0], [1.0]]), {"mean": 10.0, "std": 2.0}, "mse")
    assert none is None and value.tolist() == [10.0, 12.0]
    assert REGRESSION.output_columns({}, value.numpy(), None)["prediction"].tolist() == [10.0, 12.0]
    target = {"classes": ["no", "yes"]}
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    index, proba = BINARY.decide(logits, target, "cross_entropy")
    assert index.tolist() == [0, 1] and torch.allclose(proba.sum(1), torch.ones(2))
    tuned, _ = BINARY.decide(logits, target | {"threshold": 0.8}, "cross_entropy")  # 0.73 < 0.8: no
    assert tuned.tolist() == [0, 0]
    cooled, cooled_proba = BINARY.decide(logits, target | {"temperature": 2.0}, "cross_entropy")
    assert cooled.tolist() == [0, 1] and cooled_proba[0, 0] < proba[0, 0]  # a temperature softens, never flips
    shifted, _ = MULTICLASS.decide(torch.zeros(1, 3), {"classes": [1, 2, 3], "class_bias": [0.0, 0.0, 0.5]},
                                   "cross_entropy")
    assert shifted.tolist() == [2]
    columns = BINARY.output_columns(target, np.array([1, 0]), proba.numpy())
    assert columns["prediction"].tolist() == ["yes", "no"] and set(columns) == {"prediction", "proba_no", "proba_yes"}
    assert BINARY.answer(target, np.array([1]), proba[1:].numpy())["predictions"] == ["yes"]
    one_logit, p = BINARY.decide(torch.tensor([[3.0]]), target, "bce")
    assert one_logit.tolist() == [1] and p.shape == (1, 2)


def test_explainers_are_found_by_the_modality_name():
    from types import SimpleNamespace

    from scaletrain.explain import explainer_for
    from scaletrain.explain.base import Explainer
    from scaletrain.explain.image import ImageExplainer
    from scaletrain.explain.table import TableExplainer

    def run(name):
        return SimpleNamespace(modality=SimpleNamespace(name=name))

    assert isinstance(explainer_for(run("table")), TableExplainer)
    assert isinstance(explainer_for(run("image")), ImageExplainer)
    assert type(explainer_for(run("sound"))) is Explainer  # a modality without one: explains nothing, clearly


def test_regression_predictions_stay_within_the_training_targets_range():
    import numpy as np
    import pandas as pd
    import torch

    import scaletrain

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 300)
    frame = pd.DataFrame({"x": x, "rating": np.clip(np.round(1 + 4 * x + rng.normal(0, 0.3, 300)), 1, 5)})
    run = scaletrain.fit(frame, "rating", out=None, model="linear", sets=["data.task=regression"])
    target = run.preprocess["target"]
    assert target["lo"] == 1 and target["hi"] == 5
    # a line runs past the ends (free text's TF-IDF is not clipped as numbers are): cut at the range
    outputs = (torch.tensor([[-9.0], [0.0], [9.0]]) - target["mean"]) / target["std"] + 2.5 / target["std"]
    values = REGRESSION.decide(outputs, target, "mse")[0].tolist()
    assert values[0] == 1 and values[2] == 5 and 1 < values[1] < 5
    old = {"task": "regression", "mean": 0.0, "std": 1.0}  # a run written before the range was kept
    assert float(REGRESSION.decide(torch.tensor([[9.0]]), old, "mse")[0]) == 9.0
