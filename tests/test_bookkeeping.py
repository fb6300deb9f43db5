"""Book-keeping clipping (train/bookkeeping.py) leaves in .grad exactly what per-row gradients,
each clipped, then summed, give — for every layer kind it covers — from one backward pass."""
import pytest
import torch
from torch import nn

from scaletrain.train import bookkeeping
from scaletrain.train.bookkeeping import BookKeeping, supports


class Tabular(nn.Module):
    """Category ids through an embedding, a sequence through a linear layer, a layer norm."""

    def __init__(self):
        super().__init__()
        self.ids, self.seq = nn.Embedding(7, 4, padding_idx=0), nn.Linear(3, 4)
        self.norm, self.head = nn.LayerNorm(4), nn.Linear(4, 3)

    def forward(self, ids, seq):
        return self.head(self.norm(self.ids(ids).mean(1) + torch.relu(self.seq(seq)).mean(1)))


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))


def per_row_reference(model, inputs, y, max_norm):
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(y)):
        row = tuple(t[i:i + 1] for t in inputs)
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(*row), y[i:i + 1]), params)
        factor = min(1.0, max_norm / (torch.sqrt(sum(g.pow(2).sum() for g in grads)).item() + 1e-6))
        total = [t + factor * g for t, g in zip(total, grads)]
    return total


@pytest.mark.parametrize("kind", ["conv", "conv, per-row gradients not held", "tabular"])
def test_one_pass_gives_the_sum_of_clipped_per_row_gradients(kind, monkeypatch):
    torch.manual_seed(0)
    if "not held" in kind:
        monkeypatch.setattr(bookkeeping, "MATERIALIZED", 0)
    if kind.startswith("conv"):
        model, inputs = conv_net(), (torch.randn(6, 1, 6, 6),)
        model[0].bias.requires_grad_(False)  # a frozen parameter takes no gradient
    else:
        model, inputs = Tabular(), (torch.randint(0, 7, (6, 5)), torch.randn(6, 4, 3))
    y = torch.randint(0, 3, (6,))
    assert supports(model)
    expected = per_row_reference(model, inputs, y, max_norm=0.5)
    wrapped = BookKeeping(model, 0.5)
    wrapped.clipped_backward(nn.functional.cross_entropy(wrapped(*inputs), y, reduction="none"))
    trained = [p for p in model.parameters() if p.requires_grad]
    for param, want in zip(trained, expected):
        torch.testing.assert_close(param.grad, want, rtol=1e-4, atol=1e-6)
    assert any(want.norm() > 0 for want in expected)
    if kind.startswith("conv"):
        assert model[0].bias.grad is None


def test_layers_it_cannot_split_keep_opacus_two_passes():
    assert not supports(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    assert not supports(nn.Conv2d(1, 2, 3, padding="same"))
    assert supports(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
    shared = nn.Linear(3, 3)
    wrapped = BookKeeping(nn.Sequential(shared, shared), 1.0)
    with pytest.raises(RuntimeError, match="called twice"):
        wrapped.clipped_backward(wrapped(torch.randn(2, 3)).sum(1))
