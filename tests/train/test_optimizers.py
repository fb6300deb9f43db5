import math

import pytest
import torch
from torch import nn

from scaletrain.train.optim import build_optimizer, lr_factor


def quadratic_run(name: str, steps: int = 50, lr: float = 0.05, weight_decay: float = 0.0):
    """Minimise ||w - 3||² from w = 0; return the final w."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1, bias=False)
    nn.init.zeros_(model.weight)
    opt = build_optimizer(model, name, lr=lr, momentum=0.9, weight_decay=weight_decay)
    for _ in range(steps):
        loss = ((model.weight - 3.0) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.weight.detach()


@pytest.mark.parametrize("name", ["gd", "sgd", "momentum", "nesterov", "adam", "adamw"])
def test_every_optimizer_steps_towards_the_minimum(name):
    w = quadratic_run(name, steps=200, lr=0.05)
    assert torch.allclose(w, torch.full_like(w, 3.0), atol=0.2)


def test_momentum_moves_faster_than_plain_sgd_and_nesterov_differs():
    sgd, mom, nes = (quadratic_run(n, steps=5, lr=0.01) for n in ("sgd", "momentum", "nesterov"))
    assert (mom - 3).abs().mean() < (sgd - 3).abs().mean()
    assert not torch.allclose(mom, nes)


def test_adamw_decay_is_decoupled_from_adam_l2():
    adam = quadratic_run("adam", steps=100, weight_decay=0.5)
    adamw = quadratic_run("adamw", steps=100, weight_decay=0.5)
    assert not torch.allclose(adam, adamw, atol=1e-3)


def test_biases_do_not_decay():
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, "adamw", lr=0.1, momentum=0.0, weight_decay=0.1)
    decays = {p.dim(): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {2: 0.1, 1: 0.0}


def test_schedules():
    args = dict(warmup=0.0, milestones=[0.5, 0.75], gamma=0.1)
    assert lr_factor(0.3, "constant", **args) == 1.0
    assert [lr_factor(p, "step", **args) for p in (0.1, 0.6, 0.9)] == pytest.approx([1, 0.1, 0.01])
    assert lr_factor(0.5, "cosine", **args) == pytest.approx(0.5) and lr_factor(1.0, "cosine", **args) < 1e-9
    one = [lr_factor(p / 20, "onecycle", **args) for p in range(21)]
    peak = one.index(max(one))
    assert one[0] < 0.1 and max(one) == pytest.approx(1.0, abs=1e-3) and one[-1] < 1e-3
    assert all(a <= b for a, b in zip(one[:peak], one[1:peak + 1]))
    assert all(a >= b for a, b in zip(one[peak:], one[peak + 1:]))


def test_warmup_rises_linearly_then_follows_the_schedule():
    factors = [lr_factor(p, "cosine", 0.2, [], 0.1) for p in (0.05, 0.1, 0.2)]
    assert factors[0] == pytest.approx(0.25) and factors[1] == pytest.approx(0.5) and factors[2] == pytest.approx(1.0)
    assert math.isclose(lr_factor(0.6, "cosine", 0.2, [], 0.1), 0.5)

