"""How a table model fuses its inputs: the table's columns, its free text and each image column
each arrive as one vector (a group); the combiner makes one vector of them for the body.

concat: side by side (the default: nothing to learn, and the strong baseline of fusion).
gated: each group projected to a common width and weighed by a gate the row itself sets (the
gated multimodal unit, Arevalo et al. 2017): a row whose image says little leans on its numbers.
attention: each group a token (projected, plus a learned "which input" vector); one layer of
self-attention lets each input read the others before they are laid side by side.
Written here rather than taken from nn.MultiheadAttention: its fused fast path does not export
to ONNX the same way in every torch version, and these few explicit ops do."""
from __future__ import annotations

import math

import torch
from torch import nn

COMBINERS = ("concat", "gated", "attention")
FUSED_WIDTH = 64  # each group's projected width (gated, attention)
HEADS = 4


class Concat(nn.Module):
    def __init__(self, widths: list[int]):
        super().__init__()
        self.width = sum(widths)

    def forward(self, groups: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(groups, dim=1) if len(groups) > 1 else groups[0]


class Gated(nn.Module):
    def __init__(self, widths: list[int], width: int = FUSED_WIDTH):
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(w, width) for w in widths)
        self.gate = nn.Linear(sum(widths), len(widths))
        self.width = width

    def forward(self, groups: list[torch.Tensor]) -> torch.Tensor:
        projected = torch.stack([torch.tanh(p(g)) for p, g in zip(self.project, groups)], dim=1)
        weights = torch.softmax(self.gate(torch.cat(groups, dim=1)), dim=1)
        return (weights.unsqueeze(2) * projected).sum(dim=1)


class Attention(nn.Module):
    def __init__(self, widths: list[int], width: int = FUSED_WIDTH, heads: int = HEADS):
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(w, width) for w in widths)
        self.which = nn.Parameter(torch.zeros(len(widths), width))
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.heads, self.width = heads, width * len(widths)

    def forward(self, groups: list[torch.Tensor]) -> torch.Tensor:
        x = torch.stack([p(g) for p, g in zip(self.project, groups)], dim=1) + self.which  # (rows, groups, width)
        rows, tokens, width = x.shape
        q, k, v = (t.reshape(rows, tokens, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=2))
        attended = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(width // self.heads), dim=3) @ v
        x = self.norm(x + self.out(attended.transpose(1, 2).reshape(rows, tokens, width)))
        return x.flatten(1)


def combiner(name: str, widths: list[int]) -> nn.Module:
    return {"concat": Concat, "gated": Gated, "attention": Attention}[name](widths)
