"""Per-piece L2 from the labels in the linear text model (model.text_relevance; train/full_batch.py)."""
import math

import torch
import yaml
from tokenizers import Tokenizer

import scaletrain
from scaletrain.tasks import task_of
from scaletrain.train.full_batch import RELEVANCE_FLOOR, l2_penalty
from tests.test_text_columns import articles


def test_the_relevance_is_naive_bayes_log_count_ratios_class_against_the_rest():
    counts = torch.tensor([[9.0, 1.0], [4.0, 4.0], [0.0, 3.0]])  # rows of each class holding each piece
    ratio = task_of("binary").piece_relevance(counts, 2)
    inside, outside = counts + 1, counts.flip(1) + 1  # two classes: the rest of class 0 is class 1
    expected = (torch.log(inside / inside.sum(0)) - torch.log(outside / outside.sum(0))).abs()
    assert torch.allclose(ratio, expected)
    assert ratio[0, 0] > ratio[1, 0] and math.isclose(float(ratio[1, 0]), abs(math.log(5 / 16) - math.log(5 / 11)), rel_tol=1e-6)
    assert torch.equal(task_of("binary").piece_relevance(counts, 1), ratio[:, 1:2])  # one logit: class 1's
    assert task_of("regression").piece_relevance(counts, 1) is None


def test_on_a_piece_that_names_the_class_costs_less_than_filler(tmp_path):
    run = scaletrain.fit(articles(300), "topic", out=tmp_path / "run", model="linear",
                         sets=["model.text_relevance=on", "train.optimizer=lbfgs"])
    weight = run.model.text_linear.weight
    scale = weight.l2_scale
    assert scale.shape == weight.shape and float(scale.max()) <= 0.1 / RELEVANCE_FLOOR ** 2 + 1e-6
    pieces = Tokenizer.from_file(str(tmp_path / "run" / "tokenizer.json"))
    goal, bank, the = (pieces.token_to_id(w) for w in ("goal", "bank", "the"))
    assert scale[goal].min() < scale[the].min() / 10 and scale[bank].min() < scale[the].min() / 10  # topic < filler
    plain = 0.5 * float((0.1 * weight.detach().pow(2)).sum())
    assert not math.isclose(float(l2_penalty(run.model).detach()), plain)  # the scales are what the penalty uses
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["model"]["text_relevance"] == "on"


def test_off_by_default_and_nothing_to_weigh_for_numbers(tmp_path):
    from scaletrain.train.full_batch import weigh_pieces

    run = scaletrain.fit(articles(300), "topic", out=None, model="linear", sets=["train.optimizer=lbfgs"])
    assert run.config.model.text_relevance == "off"
    assert run.model.text_linear.weight.l2_scale == 0.1  # the one base scale, no per-piece tensor
    frame = articles(300)
    frame["size"] = frame["body"].str.count("goal") + frame["size"]
    numbers = scaletrain.fit(frame.drop(columns="topic"), "size", out=None, model="linear",
                             sets=["train.optimizer=lbfgs", "model.text_relevance=on"])
    assert numbers.model.text_linear.weight.l2_scale == 0.1  # a regression's task has no relevance measure
    inputs = tuple(torch.zeros(4, 3) for _ in range(2))
    assert not weigh_pieces(numbers.model, inputs, torch.zeros(4), "regression")
