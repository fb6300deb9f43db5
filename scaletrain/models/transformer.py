"""A BERT-style Transformer encoder (`model.name=transformer`), its masked-LM head and a pooled
text encoder for fine-tuning.

Written here rather than taken from Hugging Face `transformers` (an optional interop, not a
dependency): attention is PyTorch's fused scaled_dot_product_attention, packed blocks mask
attention across documents, and the layout is BERT's, tensor for tensor, so that
`pretrain/hf.py` writes weights `BertForMaskedLM` loads and gives the same logits with.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EncoderShape:
    vocab_size: int
    max_positions: int = 512
    layers: int = 4
    width: int = 256
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    pre_norm: bool = False  # BERT is post-norm (and what Hugging Face export reproduces)
    eps: float = 1e-12      # BERT's LayerNorm epsilon

    def to_dict(self) -> dict:
        return asdict(self)


def attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """Which keys each query sees, (batch, 1, length, length): tokens of the same document
    (segment id > 0; 0 is padding). Packed blocks hold several documents: none sees another.
    A padding query sees itself only, so no row of the softmax is empty."""
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)
    return (same | torch.eye(segments.shape[1], dtype=torch.bool, device=segments.device))[:, None]


class Block(nn.Module):
    def __init__(self, s: EncoderShape):
        super().__init__()
        self.heads, self.pre_norm, self.dropout = s.heads, s.pre_norm, s.dropout
        self.qkv = nn.Linear(s.width, 3 * s.width)
        self.attention_out = nn.Linear(s.width, s.width)
        self.attention_norm = nn.LayerNorm(s.width, eps=s.eps)
        self.ff_in = nn.Linear(s.width, s.ff)
        self.ff_out = nn.Linear(s.ff, s.width)
        self.ff_norm = nn.LayerNorm(s.width, eps=s.eps)
        self.drop = nn.Dropout(s.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.attention_norm(x) if self.pre_norm else x
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.attention_out(a.transpose(1, 2).reshape(b, n, d)))
        x = x if self.pre_norm else self.attention_norm(x)
        h = self.ff_norm(x) if self.pre_norm else x
        x = x + self.drop(self.ff_out(F.gelu(self.ff_in(h))))
        return x if self.pre_norm else self.ff_norm(x)


class Encoder(nn.Module):
    """Token and position embeddings, then the blocks; hidden states (batch, length, width)."""

    def __init__(self, s: EncoderShape):
        super().__init__()
        if s.width % s.heads:
            raise ValueError(f"model.width {s.width} is not a multiple of model.heads {s.heads}")
        self.shape = s
        self.tokens = nn.Embedding(s.vocab_size, s.width)
        self.positions = nn.Embedding(s.max_positions, s.width)
        self.embedding_norm = nn.LayerNorm(s.width, eps=s.eps)
        self.drop = nn.Dropout(s.dropout)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.layers))
        self.final_norm = nn.LayerNorm(s.width, eps=s.eps) if s.pre_norm else nn.Identity()
        self.apply(_bert_init)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        segments = (ids > 0).long() if segments is None else segments  # id 0 is [PAD]
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.embedding_norm(self.tokens(ids) + self.positions(positions)))
        mask = attention_mask(segments)
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)


class MaskedLM(nn.Module):
    """The encoder with BERT's prediction head (dense, GELU, LayerNorm, then the token
    embeddings, tied, as the output matrix): logits (batch, length, vocabulary)."""

    def __init__(self, s: EncoderShape):
        super().__init__()
        self.encoder = Encoder(s)
        self.head_dense = nn.Linear(s.width, s.width)
        self.head_norm = nn.LayerNorm(s.width, eps=s.eps)
        self.head_bias = nn.Parameter(torch.zeros(s.vocab_size))
        _bert_init(self.head_dense)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits at every position, or (with labels, -100 where nothing is predicted) at the
        labelled positions only: (labelled tokens, vocabulary)."""
        h = self.encoder(ids, segments)
        h = h[labels >= 0] if labels is not None else h
        h = self.head_norm(F.gelu(self.head_dense(h)))
        return h @ self.encoder.tokens.weight.T + self.head_bias


class PooledText(nn.Module):
    """A text encoder for classification: the mean of the encoder's states over the text's
    tokens. Masked-LM pretraining (no next-sentence task) leaves [CLS] untrained, and the
    mean is what sentence encoders pool (Reimers & Gurevych 2019)."""

    def __init__(self, s: EncoderShape):
        super().__init__()
        self.encoder = Encoder(s)
        self.width = s.width

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        states = self.encoder(tokens)
        real = (tokens > 0).unsqueeze(-1).to(states.dtype)
        return (states * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)


def _bert_init(module: nn.Module) -> None:
    """BERT's initialization: N(0, 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
