"""A recommender run as its scoring tower in ONNX plus the item embeddings in safetensors, so
that an approximate-nearest-neighbour index (FAISS, ScaNN, a vector database) can be built
outside: a user's scores are `user_vector · items[i] + bias[i]`.

- ease and popularity: the tower reads `history`, the user's weights over the catalogue
  (batch, items): 0.5 ** (interactions since) for each past item, the card gives the half-life;
  for EASE the user vector is that history and items are the columns of its weights.
- twotower: the tower reads `history` too; the user vector is its weighted mean of item vectors,
  plus — when the run had a users side table — the vector of the user's features, looked up by
  a second input `user`, the user's index (-1: none; the card lists the ids in order).
- mf: the tower reads `user`, the user's index (the card lists the ids in order; past USER_ROWS
  users the tower folds the index into its rows itself).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from scaletrain.io import atomic_write_bytes, save_tensors, write_json
from scaletrain.recommend.run import RecommenderRun
from scaletrain.version import VERSION

OPSET = 18
EMBEDDINGS = "item_embeddings.safetensors"


class Tower(nn.Module):
    """(user_vector, scores) from the input; scores = user_vector @ items.T + bias."""

    def __init__(self, users: torch.Tensor | None, items: torch.Tensor, bias: torch.Tensor, mean: bool = False,
                 side: torch.Tensor | None = None):
        super().__init__()
        self.mean = mean  # two towers: the history's weighted mean of the item vectors
        self.users = None if users is None else nn.Parameter(users, requires_grad=False)
        self.items, self.bias = nn.Parameter(items, requires_grad=False), nn.Parameter(bias, requires_grad=False)
        self.side = None if side is None else nn.Parameter(side, requires_grad=False)  # users' features' vectors

    def forward(self, x: torch.Tensor, user: torch.Tensor | None = None):
        if self.users is not None:  # mf: the user's row (folded where users outnumber the rows)
            vector = self.users[x % self.users.shape[0]]
        elif self.mean:
            vector = (x @ self.items) / x.sum(1, keepdim=True).clamp(min=1e-6)
            if self.side is not None:
                vector = vector + self.side[user.clamp(min=0)] * (user >= 0).to(vector.dtype)[:, None]
        elif self.items.shape[1] == 1:  # popularity: one dimension, the same for everyone
            vector = torch.ones_like(x[:, :1])
        else:  # ease: the history itself
            vector = x
        return vector, vector @ self.items.T + self.bias


def tower_of(run: RecommenderRun) -> tuple[Tower, list[str]]:
    """The run's tower and the names of its inputs."""
    weights, model = run.recommender.scorer.weights, run.recommender.scorer.spec["model"]
    n_items = run.recommender.n_items
    if model == "mf":
        return Tower(weights["users"], weights["items"], weights["bias"]), ["user"]
    if model == "ease":
        return Tower(None, weights["ease"].T.contiguous(), torch.zeros(n_items)), ["history"]
    if model == "twotower":
        side = weights.get("users_side")
        return Tower(None, weights["items"], weights["bias"], True, side), ["history"] + (["user"] if side is not None else [])
    return Tower(None, weights["popularity"][:, None].float(), torch.zeros(n_items)), ["history"]


def export_towers(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN/model.onnx (or `out`), item_embeddings.safetensors beside it and the card."""
    run = RecommenderRun.load(run_dir)
    out = Path(out) if out else run.path / "model.onnx"
    tower, names = tower_of(run)
    examples = tuple(torch.zeros((2,), dtype=torch.int64) if name == "user" else torch.zeros((2, run.recommender.n_items))
                     for name in names)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(tower.eval(), examples, buffer, input_names=names, output_names=["user_vector", "scores"],
                          dynamic_axes={name: {0: "batch"} for name in names + ["user_vector", "scores"]},
                          opset_version=OPSET, dynamo=False)
    atomic_write_bytes(out, buffer.getvalue())
    save_tensors(out.with_name(EMBEDDINGS), {"items": tower.items.detach().contiguous(), "bias": tower.bias.detach()})
    spec = run.recommender.scorer.spec
    write_json(out.with_suffix(".card.json"), {
        "scaletrain": VERSION, "task": "recommend", "model": spec, "input": names[0], "inputs": names,
        "history": {"half_life": run.recommender.scorer.half_life,
                    "weight": "0.5 ** (the user's interactions since this one / half_life); 1 when half_life is 0"}
        if "history" in names else None,
        "outputs": {"user_vector": "the user's vector", "scores": "user_vector @ items.T + bias, every item"},
        "embeddings": EMBEDDINGS, "items": run.recommender.item_ids,
        "users": run.recommender.user_ids if "user" in names else None,
        "metrics": run.metrics.get("test", {})})
    return out
