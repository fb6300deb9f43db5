"""Structured pruning: whole neurons (MLP) or channels (CNN, ResNet) removed, so the pruned
model is a smaller model of the same family — fewer parameters and less time per row, unlike
zeroed weights (pytorch #36214: unstructured pruning saves nothing at run time).

Each layer keeps the units whose incoming weights have the largest L1 norm (Li et al. 2017,
"Pruning filters for efficient ConvNets"); the next layer loses the matching inputs. The kept
widths are what the smaller model's config says (model.hidden, model.width), so the result
loads as any run does.
"""
from __future__ import annotations

import torch
from torch import nn

from scaletrain.config import Config
from scaletrain.errors import ExportError
from scaletrain.models.registry import build_model
from scaletrain.models.vision import ResidualBlock

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)


def _strongest(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (sorted) of the k output units with the largest L1 norm of incoming weights."""
    return weight.abs().flatten(1).sum(dim=1).topk(k).indices.sort().values


def _norm_state(norm: nn.Module, keep: torch.Tensor, prefix: str) -> dict:
    return {f"{prefix}.{name}": (t[keep] if t.ndim else t) for name, t in norm.state_dict().items()}


def _linear_stack(body: nn.Sequential, fraction: float, prefix: str) -> tuple[dict, list[int]]:
    """Sliced tensors of an MLP body (Linear → norm → activation … → Linear), and the kept widths."""
    layers, state, widths, prev = list(body), {}, [], None
    linears = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)]
    for i in linears[:-1]:
        weight = layers[i].weight if prev is None else layers[i].weight[:, prev]
        keep = _strongest(weight, max(1, round(layers[i].out_features * (1 - fraction))))
        state |= {f"{prefix}{i}.weight": weight[keep], f"{prefix}{i}.bias": layers[i].bias[keep]}
        if i + 1 < len(layers) and isinstance(layers[i + 1], NORMS):
            state |= _norm_state(layers[i + 1], keep, f"{prefix}{i + 1}")
        widths.append(len(keep))
        prev = keep
    last = layers[linears[-1]]
    state |= {f"{prefix}{linears[-1]}.weight": last.weight if prev is None else last.weight[:, prev],
              f"{prefix}{linears[-1]}.bias": last.bias}
    return state, widths


def _conv_bn(block: nn.Sequential, prev, k: int, prefix: str, keep=None) -> tuple[dict, torch.Tensor]:
    weight = block[0].weight if prev is None else block[0].weight[:, prev]
    keep = _strongest(weight, k) if keep is None else keep
    return {f"{prefix}.0.weight": weight[keep]} | _norm_state(block[1], keep, f"{prefix}.1"), keep


def _conv_stack(net: nn.Sequential, width: int, new_width: int) -> dict:
    """Sliced tensors of build_convnet's layout: every conv keeps new_width/width of its channels;
    a residual block's second conv keeps the trunk's channels, which the skip adds to."""
    state, prev = {}, None
    for i, layer in enumerate(net):
        if isinstance(layer, nn.Sequential) and isinstance(layer[0], nn.Conv2d):
            part, prev = _conv_bn(layer, prev, layer[0].out_channels // width * new_width, str(i))
            state |= part
        elif isinstance(layer, ResidualBlock):
            a, inner = _conv_bn(layer.a, prev, layer.a[0].out_channels // width * new_width, f"{i}.a")
            b, _ = _conv_bn(layer.b, inner, 0, f"{i}.b", keep=prev)
            state |= a | b
        elif isinstance(layer, nn.Linear):
            state |= {f"{i}.weight": layer.weight[:, prev], f"{i}.bias": layer.bias}
    return state


def pruned(model: nn.Module, config: Config, spec, fraction: float) -> tuple[nn.Module, Config]:
    """The smaller model (its units chosen and copied from `model`) and its config."""
    if not 0 < fraction < 1:
        raise ExportError(f"--prune {fraction}: give the share of neurons/channels to remove, between 0 and 1")
    cfg, name = config.thawed(), config.model.name
    full = {k: v.detach() for k, v in model.state_dict().items()}
    if name == "mlp" and hasattr(model, "body"):
        state, widths = _linear_stack(model.body, fraction, "body.")
        cfg.model.hidden = widths
    elif name in ("cnn", "resnet"):
        width = config.model.width or 16
        cfg.model.width = max(1, round(width * (1 - fraction)))
        state = _conv_stack(model, width, cfg.model.width)
    else:
        raise ExportError(f"structured pruning is for mlp, cnn and resnet models; this run's model is {name} "
                          "(use --distill for a smaller model instead)")
    smaller = build_model(spec, cfg.model)
    smaller.load_state_dict(full | state)
    return smaller, cfg
