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
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from scaletrain.models.rowwise_adagrad import RowwiseAdagrad, row_gradients

LR, L2 = 0.01, 1e-5  # first defaults, not yet chosen on a panel (BENCHMARKS.md, "ranking, first slice")
# the streamed tables: row-wise Adagrad, no L2 (at 8,192 pairs a step L2=1e-5 held BPR to popularity's
# HR@10 on the generated log, 0.053 vs 0.049; without it 0.071, of 0.086 knowing the planted groups)
ROWWISE_LR, STREAMED_L2 = 0.05, 0.0
# the users' table holds at most this many rows (512 MB of 64-float vectors); past it user u shares
# row u % USER_ROWS — folding, not a random hash: every row takes the same number of users. Items are
# never folded: two items in one row could not be ranked apart.
USER_ROWS = 1 << 21


def user_rows(n_users: int) -> int:
    return min(n_users, USER_ROWS)


def folding_note(n_users: int) -> list[str]:
    rows = user_rows(n_users)
    return [f"{n_users:,} users share {rows:,} rows of the factorization's users table (user i has row i mod "
            f"{rows:,}; USER_ROWS bounds its memory)"] if rows < n_users else []


class Factorization(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int = 64, sparse: bool = False):
        super().__init__()
        self.users, self.items = nn.Embedding(n_users, dim, sparse=sparse), nn.Embedding(n_items, dim, sparse=sparse)
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
    but O(table) per step; a streamed log exchanges only the batch's rows (fit_bpr_streamed)."""
    generator = torch.Generator().manual_seed(shape.seed)
    torch.manual_seed(shape.seed)
    n_users = len(indptr) - 1
    model = Factorization(user_rows(n_users), n_items, shape.dim)
    users = torch.from_numpy(np.repeat(np.arange(n_users) % user_rows(n_users), np.diff(indptr)))
    items = torch.from_numpy(indices.astype(np.int64))
    optimizers = [torch.optim.Adam(model.parameters(), lr=LR)]
    start = _resume(checkpoints, model, optimizers, generator) if checkpoints is not None else 0
    for epoch in range(start, shape.epochs):
        for chosen in torch.randperm(len(users), generator=generator).split(shape.batch):
            negatives = torch.randint(0, n_items, (len(chosen),), generator=generator)
            mine = slice(ranks.rank, None, ranks.size)  # this process's share of the batch
            _step(model, optimizers, (users[chosen][mine], items[chosen][mine], negatives[mine]), len(chosen), L2,
                  None if ranks.all_reduce is None else lambda m: ranks.all_reduce([p.grad for p in m.parameters()]))
        if checkpoints is not None and ranks.rank == 0:
            _save(checkpoints, epoch + 1, model, optimizers, generator)
    return model.eval()


def fit_bpr_streamed(epoch_rows: Callable[[int], Iterator[tuple[np.ndarray, np.ndarray]]], n_users: int, n_items: int,
                     shape: BprShape = BprShape(), checkpoints: Path | None = None,
                     after_epoch: Callable[[int, Factorization], None] = lambda epoch, model: None,
                     ranks: Ranks = Ranks()) -> Factorization:
    """fit_bpr for interactions that are never all in memory: `epoch_rows(epoch)` yields the
    epoch's (user, item) index arrays a window at a time. The tables take sparse gradients and
    row-wise Adagrad updates only the rows a batch touches, with one float of state per row
    (19 ms a step of 8,192 pairs with 138,000 users here; SparseAdam 27 ms, dense Adam 60 ms).
    Checkpoints and resume as fit_bpr's, at the end of each epoch.

    Under several `ranks` each process reads the same windows, scores its slice of every batch,
    and the tables' gradients are exchanged as rows (_sum_rows): O(batch) a step, not O(table).
    Every process keeps a whole replica of the tables — they are not sharded by rows."""
    generator = torch.Generator().manual_seed(shape.seed)
    torch.manual_seed(shape.seed)
    model = Factorization(user_rows(n_users), n_items, shape.dim, sparse=True)
    optimizers = [RowwiseAdagrad([model.users.weight, model.items.weight], lr=ROWWISE_LR),
                  torch.optim.Adam([model.bias], lr=LR)]
    start = _resume(checkpoints, model, optimizers, generator) if checkpoints is not None else 0
    mine = slice(ranks.rank, None, ranks.size)
    for epoch in range(start, shape.epochs):
        for users, items in epoch_rows(epoch):
            users = torch.from_numpy(users.astype(np.int64) % user_rows(n_users))
            items = torch.from_numpy(items.astype(np.int64))
            for first in range(0, len(users), shape.batch):
                u, i = users[first:first + shape.batch], items[first:first + shape.batch]
                j = torch.randint(0, n_items, (len(u),), generator=generator)
                exchange = None if ranks.all_reduce is None else _sum_rows(ranks, u, torch.cat([i, j]))
                _step(model, optimizers, (u[mine], i[mine], j[mine]), len(u), STREAMED_L2, exchange)
        if checkpoints is not None and ranks.rank == 0:
            _save(checkpoints, epoch + 1, model, optimizers, generator)
        after_epoch(epoch + 1, model)
    return model.eval()


def _sum_rows(ranks: Ranks, users: torch.Tensor, items: torch.Tensor) -> Callable[[Factorization], None]:
    """Sum a step's sparse table gradients across ranks over the rows the whole batch touched.
    Every process knows the whole batch, so each lays its own gradient into the same (rows, dim)
    block and one all-reduce sums the blocks (with the bias, one float an item): what crosses
    the wire is the batch's rows, never a whole table."""

    def exchange(model: Factorization) -> None:
        blocks = []
        for table, touched in ((model.users.weight, users), (model.items.weight, items)):
            rows = torch.unique(touched)
            block = torch.zeros((len(rows), table.shape[1]))
            if table.grad is not None:
                own, grad = row_gradients(table.grad)
                block[torch.searchsorted(rows, own)] = grad
            blocks.append((table, rows, block))
        ranks.all_reduce([block for _, _, block in blocks] + [model.bias.grad])
        for table, rows, block in blocks:
            table.grad = torch.sparse_coo_tensor(rows[None], block, table.shape)

    return exchange


def _step(model: Factorization, optimizers: list, pairs: tuple, batch: int, l2: float,
          exchange: Callable[[Factorization], None] | None = None) -> None:
    """One BPR step on (users, items, drawn items) of a batch of `batch` pairs (this process's
    share of it; `exchange` sums the gradients across processes before the update)."""
    u, i, j = pairs
    margin = model.pair_scores(u, i) - model.pair_scores(u, j)
    # the batch's mean loss, of which this share is a part: the summed gradients are the batch's
    loss = -nn.functional.logsigmoid(margin).sum() / batch
    if l2:
        loss = loss + l2 * (model.users(u).pow(2).sum() + model.items(i).pow(2).sum() + model.items(j).pow(2).sum())
    for optimizer in optimizers:
        optimizer.zero_grad()
    loss.backward()
    if exchange is not None:
        exchange(model)
    for optimizer in optimizers:
        optimizer.step()


def _state(model: Factorization, optimizers: list, generator: torch.Generator) -> dict:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | {"generator": generator.get_state()}
    for number, optimizer in enumerate(optimizers):
        for index, moments in optimizer.state_dict()["state"].items():
            tensors |= {f"adam{number}.{index}.{k}": torch.as_tensor(v) for k, v in moments.items()}
    return tensors


def _save(folder: Path, epoch: int, model, optimizers, generator) -> None:
    from scaletrain.rundir import CheckpointFolder

    folder.mkdir(parents=True, exist_ok=True)
    found = CheckpointFolder(folder)
    found.write(f"step-{epoch:08d}.safetensors", _state(model, optimizers, generator), {"epoch": epoch}, {"epoch": epoch})
    found.prune(1)


def _resume(folder: Path, model, optimizers, generator) -> int:
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
        for number, optimizer in enumerate(optimizers):
            state = optimizer.state_dict()
            for index in range(len(state["param_groups"][0]["params"])):
                state["state"][index] = {k.rsplit(".", 1)[1]: _as_saved(v) for k, v in tensors.items()
                                         if k.startswith(f"adam{number}.{index}.")}
            optimizer.load_state_dict(state)
        generator.set_state(tensors["generator"])
        return int(meta["epoch"])
    return 0


def _as_saved(value: torch.Tensor):
    """SparseAdam counts its steps as a Python int (Adam as a float tensor): give it back an int,
    or its bias correction would round differently and the resume would not be exact."""
    return int(value) if value.dim() == 0 and not value.is_floating_point() else value
