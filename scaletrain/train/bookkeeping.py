"""DP-SGD's sum of clipped per-row gradients in one backward pass ("book-keeping", Bu et al.
2023, "Differentially Private Optimization on Large Model at Small Cost").

Opacus's ghost clipping runs the backward twice: once to find each row's gradient norm, once
more with every row's loss scaled by its clipping factor. Both passes compute every layer's
input gradients and weight gradients. Here one pass asks autograd only for the gradients of the
layers' outputs (no weight gradient is computed in it); each layer's per-row gradient norm
comes from its input and that output gradient (ghost norms: ‖a_i‖·‖b_i‖ for a linear layer,
a grouped convolution for Conv2d, train/dp_conv.py), and each weight's clipped sum is then one
product of the input with the output gradient scaled row by row — the weight-gradient half of
a single plain backward. Why not Opacus: it has no single-pass mode, and its second pass is
what kept the CNN's DP-SGD epoch at 3× the plain one.

Only models whose every trainable parameter belongs to a Linear, Conv2d (zero padding),
GroupNorm, LayerNorm or Embedding layer, each called once per forward, take this path;
`supports` says which, and anything else keeps Opacus's two passes.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from scaletrain.train.dp_conv import conv2d_grad_sample, conv2d_norm_sample

LAYERS = (nn.Linear, nn.Conv2d, nn.GroupNorm, nn.LayerNorm, nn.Embedding)
# a convolution's per-row weight gradients are held (and reused for the clipped sum) up to this
# many numbers (rows × weights: 128 MB of floats); past it they are found twice, never held
MATERIALIZED = 1 << 25


def supports(model: nn.Module) -> bool:
    """Whether every trainable parameter sits in a layer this module computes row by row."""
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(module, LAYERS):
            return False
        if isinstance(module, nn.Conv2d) and (isinstance(module.padding, str) or module.padding_mode != "zeros"):
            return False
        if isinstance(module, nn.Embedding) and (module.max_norm is not None or module.sparse
                                                 or module.scale_grad_by_freq):
            return False
    return True


class BookKeeping(nn.Module):
    """The model, its layers' inputs and outputs recorded on each training forward; `clipped_backward`
    sets every parameter's .grad to the sum over rows of the row's gradient clipped to `max_norm`."""

    def __init__(self, model: nn.Module, max_norm: float):
        super().__init__()
        self.model, self.max_norm, self.records = model, max_norm, []
        self.hooks = [m.register_forward_hook(self._record) for m in model.modules()
                      if isinstance(m, LAYERS) and any(p.requires_grad for p in m.parameters(recurse=False))]

    def forward(self, *inputs):
        self.records = []
        return self.model(*inputs)

    def _record(self, module, inputs, output) -> None:
        if module.training and torch.is_grad_enabled() and output.requires_grad:
            self.records.append((module, inputs[0].detach(), output, output._version))

    def remove_hooks(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []

    def clipped_backward(self, row_losses: torch.Tensor) -> None:
        records, self.records = self.records, []
        if len({id(m) for m, *_ in records}) < len(records) or any(o._version != v for *_, o, v in records):
            raise RuntimeError("a layer was called twice in one forward, or its output changed in place: "
                               "book-keeping clipping cannot split its rows' gradients")
        outputs = [o for _, _, o, _ in records]
        # the loss is a sum over rows, each row's from its own inputs: row i of each output's
        # gradient is the gradient of row i's loss alone
        grads = torch.autograd.grad(row_losses.sum(), outputs, allow_unused=True)
        layers = [(m, a, torch.zeros_like(o) if g is None else g) for (m, a, o, _), g in zip(records, grads)]
        per_row = [_per_row_grads(*layer) for layer in layers]
        squared = sum(_norms(*layer) if rows is None else sum(g.pow(2).sum(1) for g in rows.values())
                      for layer, rows in zip(layers, per_row))
        factor = (self.max_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0)  # Opacus's clipping factor
        for layer, rows in zip(layers, per_row):
            sums = _clipped_sums(*layer, factor) if rows is None else {
                p: (factor.to(g.dtype) @ g).reshape(p.shape) for p, g in rows.items()}
            for param, grad in sums.items():
                param.grad = grad


def _rows_of(t: torch.Tensor) -> torch.Tensor:
    """(rows, positions, features): a layer's inputs or output gradients with any middle axes as positions."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


def _normalized(module, a: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.GroupNorm):
        return F.group_norm(a, module.num_groups, eps=module.eps)
    return F.layer_norm(a, module.normalized_shape, eps=module.eps)


def _per_row_grads(module, a: torch.Tensor, b: torch.Tensor) -> dict | None:
    """{parameter: (rows, its numel)} for layers whose per-row gradients are small enough to hold
    (norm layers; convolutions under MATERIALIZED numbers): computed once, for the norms and the
    clipped sum alike. None: the layer's norms are found without them (ghost norms)."""
    trained = {p for p in module.parameters(recurse=False) if p.requires_grad}
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
        rows, xb = a.shape[0], _normalized(module, a) * b
        channels = a.shape[1] if isinstance(module, nn.GroupNorm) else module.normalized_shape
        size = channels if isinstance(channels, int) else int(torch.Size(channels).numel())
        grads = {module.weight: xb, module.bias: b}
        # GroupNorm: (rows, channels, ...) summed over the positions; LayerNorm: over all but the last axes
        shaped = (lambda t: t.reshape(rows, size, -1).sum(2)) if isinstance(module, nn.GroupNorm) else \
            (lambda t: t.reshape(rows, -1, size).sum(1))
        return {p: shaped(g) for p, g in grads.items() if p is not None and p in trained}
    if isinstance(module, nn.Conv2d) and a.shape[0] * module.weight.numel() <= MATERIALIZED:
        return conv2d_grad_sample(module, [a], b)
    return None


def _norms(module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(rows,) the squared norm of each row's gradient over the layer's trainable parameters,
    without per-row gradients (linear layers, embeddings, large convolutions)."""
    trained = {p for p in module.parameters(recurse=False) if p.requires_grad}
    if isinstance(module, nn.Conv2d):
        return sum(n.pow(2) for p, n in conv2d_norm_sample(module, [a], b).items() if p in trained)
    if isinstance(module, nn.Embedding):
        return _embedding_norms(module, a, b)
    a3, b3 = _rows_of(a.to(b.dtype)), _rows_of(b)
    if a3.shape[1] == 1:  # one position: ‖a_i b_iᵀ‖ = ‖a_i‖‖b_i‖
        weight = a3.pow(2).sum((1, 2)) * b3.pow(2).sum((1, 2))
    elif a3.shape[1] ** 2 <= a3.shape[2] * b3.shape[2]:  # a sequence: Gram matrices, T² per row
        weight = (a3 @ a3.transpose(1, 2) * (b3 @ b3.transpose(1, 2))).sum((1, 2))
    else:
        weight = torch.einsum("rti,rto->roi", a3, b3).pow(2).sum((1, 2))
    bias = b3.sum(1).pow(2).sum(1) if module.bias is not None and module.bias in trained else 0.0
    return (weight if module.weight in trained else 0.0) + bias


def _embedding_norms(module: nn.Embedding, ids: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A row's gradient is its output gradients summed per distinct id: summed by (row, id) key."""
    rows, dim = ids.shape[0], b.shape[-1]
    keys = torch.arange(rows).repeat_interleave(ids[0].numel()) * module.num_embeddings + ids.reshape(-1)
    unique, inverse = torch.unique(keys, return_inverse=True)
    summed = torch.zeros((len(unique), dim), dtype=b.dtype).index_add_(0, inverse, b.reshape(-1, dim))
    if module.padding_idx is not None:  # the padding row takes no gradient
        summed[unique % module.num_embeddings == module.padding_idx] = 0
    return torch.zeros(rows, dtype=b.dtype).index_add_(0, unique // module.num_embeddings, summed.pow(2).sum(1))


def _clipped_sums(module, a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> dict:
    """{parameter: Σ_i factor_i · (row i's gradient)} for a layer without held per-row gradients."""
    scaled = b * factor.reshape(-1, *([1] * (b.dim() - 1))).to(b.dtype)
    if isinstance(module, nn.Conv2d):
        sums = {module.weight: torch.nn.grad.conv2d_weight(
            a.to(b.dtype), module.weight.shape, scaled, stride=module.stride, padding=module.padding,
            dilation=module.dilation, groups=module.groups)}
        if module.bias is not None:
            sums[module.bias] = scaled.sum((0, 2, 3))
    elif isinstance(module, nn.Embedding):
        weight = torch.zeros_like(module.weight).index_add_(0, a.reshape(-1), scaled.reshape(-1, b.shape[-1]))
        if module.padding_idx is not None:
            weight[module.padding_idx] = 0
        sums = {module.weight: weight}
    else:  # linear
        flat_b, flat_a = scaled.reshape(-1, b.shape[-1]), a.reshape(-1, a.shape[-1]).to(b.dtype)
        sums = {module.weight: flat_b.T @ flat_a}
        if module.bias is not None:
            sums[module.bias] = flat_b.sum(0)
    return {p: g for p, g in sums.items() if p.requires_grad}
