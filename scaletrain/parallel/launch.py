"""Data-parallel `train` and `pretrain`: the process the user started launches the workers
(torch.distributed's elastic launcher, as torchrun, or Ray Train on a running cluster) and
they run the same command; rank 0 writes the run directory."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scaletrain.errors import ConfigError
from scaletrain.parallel import distributed


@dataclass
class Launch:
    """The command line's run options, to hand to the workers."""

    nproc_per_node: int | None
    nnodes: int
    node_rank: int | None
    rdzv_endpoint: str | None
    max_restarts: int
    backend: str
    config: str | Path | None
    sets: list[str]
    time_limit: str | None
    seed: int | None
    resume: bool
    quiet: bool

    def __post_init__(self):
        if self.backend not in ("torch", "ray"):
            raise ConfigError(f"--backend {self.backend!r}: choose torch or ray")

    @property
    def launches(self) -> bool:
        """True in the process that starts the workers (not in a worker)."""
        several = self.backend == "ray" or (self.nproc_per_node or 1) > 1 or self.nnodes > 1
        return several and not distributed.launched()

    def writer_out(self, out: Path) -> Path | None:
        """`out` on the machine whose rank 0 writes it (it holds the run's lock), None elsewhere:
        with several machines on a shared folder, the other nodes' launchers must not lock it."""
        return out if self.node_rank == 0 or (self.node_rank is None and self.nnodes == 1) else None

    def flags(self) -> list[str]:
        """The options a launched worker gets again from this command line."""
        return [*(["--config", str(self.config)] if self.config else []),
                *[a for item in self.sets for a in ("--set", item)],
                *(["--time-limit", self.time_limit] if self.time_limit else []),
                *(["--seed", str(self.seed)] if self.seed is not None else []),
                *(["--resume"] if self.resume else []), *(["--quiet"] if self.quiet else [])]

    def config_for(self, target: str | None = None):
        from scaletrain.api import config_from

        return config_from(_where(self.config), list(self.sets), target, seed=self.seed, time_limit=self.time_limit)

    def torchrun(self, argv: list[str]) -> None:
        distributed.launch(argv + self.flags(), self.nproc_per_node or 1, self.nnodes, self.rdzv_endpoint,
                           self.max_restarts, self.node_rank)


def _where(path):  # Ray's workers run in other folders: local paths made absolute
    return None if path is None else str(path) if "://" in str(path) else str(Path(path).resolve())


def launch_train(launch: Launch, data: str, test: str | None, target: str | None, out: Path) -> None:
    if launch.backend == "ray":
        from scaletrain.parallel.ray_train import fit_on_ray

        fit_on_ray({"data": _where(data), "test": _where(test), "out": _where(out),
                    "config": launch.config_for(target).to_dict(), "resume": launch.resume},
                   launch.nproc_per_node or 1)
    else:
        launch.torchrun(["train", data, "--out", str(out), *(["--test", test] if test else []),
                         *(["--target", target] if target else [])])


def launch_pretrain(launch: Launch, corpus: list[str], out: Path) -> None:
    """The corpus is tokenized here, once, before the workers start; they find OUT/blocks."""
    from scaletrain.api import pretrain_blocks

    cfg = launch.config_for()
    pretrain_blocks(corpus, out, cfg, verbose=not launch.quiet)
    if launch.backend == "ray":
        from scaletrain.parallel.ray_train import pretrain_on_ray

        pretrain_on_ray({"sources": [_where(s) for s in corpus], "out": _where(out), "config": cfg.to_dict(),
                         "resume": launch.resume}, launch.nproc_per_node or 1)
    else:
        launch.torchrun(["pretrain", *corpus, "--out", str(out)])
