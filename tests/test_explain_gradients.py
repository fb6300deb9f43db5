"""Captum's methods with one backward root (explain/gradients.py) give Captum's own numbers."""
import torch
from captum.attr import DeepLift, IntegratedGradients
from torch import nn

from scaletrain.explain.gradients import deep_lift, integrated_gradients


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def test_integrated_gradients_and_deeplift_equal_captums():
    model, x, base = _model(), torch.randn(40, 5), torch.randn(40, 5)
    target = torch.arange(40) % 3
    ours = integrated_gradients(model).attribute(x, baselines=base, target=target, n_steps=24)
    theirs = IntegratedGradients(model).attribute(x, baselines=base, target=target, n_steps=24)
    assert torch.allclose(ours, theirs, atol=1e-6)
    ours, theirs = (cls(model).attribute(x, baselines=base, target=target) for cls in (deep_lift, DeepLift))
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_one_backward_root_per_pass(monkeypatch):
    model, x, base = _model(), torch.randn(40, 5), torch.randn(40, 5)
    roots, grad = [], torch.autograd.grad

    def counted(outputs, *args, **kwargs):
        roots.append(1 if isinstance(outputs, torch.Tensor) else len(outputs))
        return grad(outputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counted)
    integrated_gradients(model).attribute(x, baselines=base, target=torch.arange(40) % 3, n_steps=24)
    assert roots == [1]  # Captum's own: one root per row and step (960 here)
