"""Data-parallel training through torch.distributed: the launcher, the process group, and the
few collective decisions the loop needs.

scaletrain runs no cluster code of its own: `--nproc-per-node` hands the command to
torch.distributed's elastic launcher (what `torchrun` runs), which starts the workers, holds
the rendezvous and restarts workers after a failure; Ray Train starts them under
`--backend ray`. Each worker then joins the process group those launchers describe in its
environment (gloo on CPU, nccl on CUDA) and trains a DistributedDataParallel (or FSDP) model
on its share of every batch.

What N ranks mean: `train.batch_size` is the global batch. Each rank takes batch_size / N
rows of it, and the gradients are averaged across ranks, so one optimizer step sees the same
rows and the same mean gradient as one process with that batch size, and `train.lr` means
the same whatever N. Gradient accumulation multiplies the global batch as in one process.
"""
from __future__ import annotations

import gc
import itertools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from scaletrain.errors import ConfigError, ScaletrainError
from scaletrain.runlock import LAUNCHED

LAUNCHED_HERE = LAUNCHED  # the workers inherit it (runlock: they write under the launcher's lock)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """Return this process's place among the ranks (one process: rank 0 of 1)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                     int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return World()


def launched() -> bool:
    """True in a worker that torchrun started with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ


def restarted() -> bool:
    """True in a worker the elastic launcher restarted after a failure: it must resume."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def init(device: str) -> bool:
    """Join the process group the launcher's environment describes; return True if this call
    created it (the caller then destroys it). A no-op in a single process or under Ray, which
    has already joined."""
    if not dist.is_available() or dist.is_initialized() or not launched():
        return False
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # The elastic agent's key-value store outlives a restart; keys written by the killed
    # attempt's workers (their listening addresses) must not be read by the next attempt's,
    # which then fail to connect (seen: every first restart failed, the second worked).
    from datetime import timedelta

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    timeout = timedelta(minutes=10)
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # else rank 0 hosts it, as env:// does
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size,
                          is_master=not agent_store and rank == 0, timeout=timeout, multi_tenant=not agent_store)
    store = dist.PrefixStore(f"scaletrain/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=rank, world_size=size, timeout=timeout)
    return True


def finish(created: bool, wait: bool = True) -> None:
    """Leave the process group this process created (after the others, unless it failed)."""
    if created and dist.is_initialized():
        if wait:
            dist.barrier()
        gc.collect()  # what the run dropped (a model's shards, their hooks) ends before the group does
        dist.destroy_process_group()


class ReleasedShard(torch.nn.Module):
    """What a rank other than 0 holds once FSDP's shards are gathered on rank 0, which alone
    predicts: a shard's forward would all-gather, a collective rank 0 never joins (a tuned
    threshold's did), and the shards freed end before the process group does."""

    def __init__(self):
        super().__init__()
        self.register_buffer("released", torch.zeros(0))  # a dtype for Run.outputs to read before forward

    def forward(self, *args, **kwargs):
        raise ScaletrainError("internal: a rank other than 0 predicted after FSDP training; "
                              "only rank 0 holds the gathered model")


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if world().active:
        dist.barrier()


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank if it is True on any: a stop decided by one rank's clock or data
    must stop all, or the others would wait forever in the next all-reduce."""
    if not world().active:
        return flag
    value = torch.tensor([1 if flag else 0], device=_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_across(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (float64, so counts stay exact)."""
    if not world().active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_text(text: str) -> str:
    """Rank 0's text on every rank (sent as bytes in a tensor; no pickle)."""
    if not world().active:
        return text
    data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=_device())
    size = torch.tensor([len(data)], device=_device())
    dist.broadcast(size, 0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=_device())
    if world().main:
        buffer.copy_(data)
    dist.broadcast(buffer, 0)
    return bytes(buffer.cpu().tolist()).decode()


def fewest(value: int) -> int:
    """The smallest value any rank holds."""
    if not world().active:
        return value
    tensor = torch.tensor([value], device=_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


class EqualSteps:
    """One rank's shard stream cut to the fewest batches any rank has: shards rarely divide
    evenly, and a rank that took one more step would wait for the others forever."""

    def __init__(self, batches):
        self.batches = batches
        self.steps = fewest(len(batches))

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int = 0, start: int = 0):
        return itertools.islice(self.batches.epoch(epoch, start), max(self.steps - start, 0))

    def __getattr__(self, name):  # transform, rows, ... of the stream itself
        return getattr(self.batches, name)


def per_rank(config, asked):
    """Return a resolved config adjusted for this rank: torch threads shared among the ranks
    of this machine, and an automatic batch size rounded up to divide over the ranks."""
    c = config.thawed()
    w = world()
    if asked.train.threads is None:
        c.train.threads = max(1, c.train.threads // w.local_size)
    if asked.train.batch_size is None and c.train.batch_size % w.size:
        c.train.batch_size += w.size - c.train.batch_size % w.size
    return c


def local_batch(batch_size: int) -> int:
    """Rows each rank takes of a global batch."""
    w = world()
    if batch_size % w.size:
        low, high = batch_size - batch_size % w.size, batch_size + w.size - batch_size % w.size
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must divide evenly over "
                          f"{w.size} ranks; use {low} or {high}")
    return batch_size // w.size


def wrap(model: torch.nn.Module, device: str, fsdp: bool) -> torch.nn.Module:
    """Return the module the loop calls for training steps: the model itself in one process,
    else DistributedDataParallel (gradients averaged after backward) or, with fsdp, the model
    with every layer sharded by fully_shard (parameters, gradients and optimizer state split
    across ranks; for models larger than one device)."""
    if not world().active:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in _shardable(model):
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def _shardable(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The units FSDP shards one at a time: layers that hold parameters of their own."""
    return [m for m in model.modules() if m is not model and isinstance(m, (torch.nn.Linear, torch.nn.Embedding))]


def full_state(model: torch.nn.Module, fsdp: bool) -> dict[str, torch.Tensor]:
    """The whole model's state dict (under FSDP a collective: the shards gathered, the result
    on rank 0 only, in CPU memory)."""
    if not (fsdp and world().active):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def launch(argv: list[str], nproc: int, nnodes: int = 1, endpoint: str | None = None, max_restarts: int = 0,
           node_rank: int | None = None) -> None:
    """Run `python -m scaletrain ARGV` on `nproc` workers per node through torch.distributed's
    elastic launcher (the code behind `torchrun`). One node: a standalone rendezvous on this
    machine. Several: the c10d rendezvous at `endpoint`, which every node's launcher joins."""
    from torch.distributed.run import main as torchrun

    if nproc < 1 or nnodes < 1:
        raise ConfigError("--nproc-per-node and --nnodes must be at least 1")
    args = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes), "--max-restarts", str(max_restarts)]
    if nnodes == 1 and endpoint is None:
        args.append("--standalone")
    else:
        if endpoint is None:
            raise ConfigError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT, the same on every node")
        args += ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "scaletrain"]
        if node_rank is not None:  # node 0 hosts the rendezvous store (not guessed from host names)
            args += ["--node-rank", str(node_rank), "--rdzv-conf", f"is_host={str(node_rank == 0).lower()}"]
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ[LAUNCHED_HERE] = "1"  # the workers inherit it: this process prints the summary
    try:
        torchrun(args + ["-m", "scaletrain", *argv])
    except ChildFailedError as exc:
        failures = "; ".join(f"rank {rank}: exit code {f.exitcode}" for rank, f in exc.failures.items())
        raise ScaletrainError(f"distributed training failed ({failures}) after {max_restarts} restart(s) allowed; "
                              "the workers' errors are printed above") from None
