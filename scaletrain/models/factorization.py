"""Matrix factorization trained with BPR (Rendle et al. 2009, "BPR: Bayesian Personalized
Ranking from Implicit Feedback"): a vector per user and per item and a bias per item; a user's
score for an item is their dot product plus the bias. Each step takes a batch of observed
(user, item) pairs and one item per pair drawn uniformly from the catalogue — on the fly, in
one vectorized draw — and raises the observed item's score above the drawn one's:
−log σ(s(u, i) − s(u, j)). A drawn item the user has in fact seen is kept (at MovieLens'
density 6% of draws; rejecting them costs a lookup per pair and changes little).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

LR, L2 = 0.01, 1e-5  # first defaults, not yet chosen on a panel (BENCHMARKS.md, "ranking, first slice")


class Factorization(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int = 64):
        super().__init__()
        self.users, self.items = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        self.bias = nn.Parameter(torch.zeros(n_items))
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.users(users) * self.items(items)).sum(-1) + self.bias[items]

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        """(users, items) scores over the whole catalogue."""
        return self.users(users) @ self.items.weight.T + self.bias


@dataclass(frozen=True)
class Ranks:
    """The processes training one factorization together: each takes its share of every batch
    and `all_reduce` sums a list of gradients across them in place (None: one process)."""

    rank: int = 0
    size: int = 1
    all_reduce: Callable[[list[torch.Tensor]], None] | None = None


@dataclass(frozen=True)
class BprShape:
    dim: int = 64        # the vectors' size
    epochs: int = 30
    batch: int = 1024    # (user, item) pairs a step, each with one drawn negative
    seed: int = 0


def fit_bpr(indptr: np.ndarray, indices: np.ndarray, n_items: int, shape: BprShape = BprShape(),
            checkpoints: Path | None = None, ranks: Ranks = Ranks()) -> Factorization:
    """A factorization fitted by BPR on the users' interactions (CSR rows indptr/indices):
    Adam (LR) on batches of `shape.batch` pairs, L2 on the vectors each batch touches. With
    `checkpoints`, a folder, the state after each epoch is kept there (the weights, Adam's
    moments, the draw generator's state; written by rank 0) and training continues from the
    newest one found: a killed fit resumed gives the same weights, to the bit, as one never stopped.

    Under several `ranks` every process draws the same batches and negatives (one seeded
    generator), scores its own slice of each, and the gradients are summed across processes
    before the step, so every replica takes the step one process would (to float rounding).
    The embedding tables' gradients are exchanged whole (dense all-reduce): simple and exact,
    but O(table) per step; row-sharded tables with a sparse exchange are not built yet."""
    generator = torch.Generator().manual_seed(shape.seed)
    torch.manual_seed(shape.seed)
    n_users = len(indptr) - 1
    model = Factorization(n_users, n_items, shape.dim)
    users = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(indptr)))
    items = torch.from_numpy(indices.astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    start = _resume(checkpoints, model, optimizer, generator) if checkpoints is not None else 0
    for epoch in range(start, shape.epochs):
        for chosen in torch.randperm(len(users), generator=generator).split(shape.batch):
            negatives = torch.randint(0, n_items, (len(chosen),), generator=generator)
            mine = slice(ranks.rank, None, ranks.size)  # this process's share of the batch
            u, i, j = users[chosen][mine], items[chosen][mine], negatives[mine]
            margin = model.pair_scores(u, i) - model.pair_scores(u, j)
            penalty = model.users(u).pow(2).sum() + model.items(i).pow(2).sum() + model.items(j).pow(2).sum()
            # the batch's mean loss, of which this share is a part: the summed gradients are the batch's
            loss = -nn.functional.logsigmoid(margin).sum() / len(chosen) + L2 * penalty
            optimizer.zero_grad()
            loss.backward()
            if ranks.all_reduce is not None:
                ranks.all_reduce([p.grad for p in model.parameters()])
            optimizer.step()
        if checkpoints is not None and ranks.rank == 0:
            _save(checkpoints, epoch + 1, model, optimizer, generator)
    return model.eval()


def _state(model: Factorization, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | {"generator": generator.get_state()}
    for index, moments in optimizer.state_dict()["state"].items():
        tensors |= {f"adam.{index}.{k}": torch.as_tensor(v) for k, v in moments.items()}
    return tensors


def _save(folder: Path, epoch: int, model, optimizer, generator) -> None:
    from scaletrain.rundir import CheckpointFolder

    folder.mkdir(parents=True, exist_ok=True)
    found = CheckpointFolder(folder)
    found.write(f"step-{epoch:08d}.safetensors", _state(model, optimizer, generator), {"epoch": epoch}, {"epoch": epoch})
    found.prune(1)


def _resume(folder: Path, model, optimizer, generator) -> int:
    """The epoch the newest valid checkpoint in `folder` ends (0: none), its state loaded."""
    from scaletrain.errors import RunDirError
    from scaletrain.rundir import CheckpointFolder

    found = CheckpointFolder(folder)
    for path in reversed(found.files()):
        try:
            tensors, meta = found.read(path)
        except RunDirError:
            continue  # a checkpoint whose checksum fails: an older one, or a fresh start
        model.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("model.")})
        state = optimizer.state_dict()
        for index in range(len(state["param_groups"][0]["params"])):
            state["state"][index] = {k.rsplit(".", 1)[1]: v for k, v in tensors.items()
                                     if k.startswith(f"adam.{index}.")}
        optimizer.load_state_dict(state)
        generator.set_state(tensors["generator"])
        return int(meta["epoch"])
    return 0
