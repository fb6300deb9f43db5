"""One assembly for every training regime (a fit's candidates, distillation, pretraining, and
the regimes still to come): the process group joined for the run, the loop settings, and the
callbacks every run has (time limit, checkpoints, the caller's own, progress), built from the
resolved train config and the `Budget`, in one order."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from scaletrain.config import CheckpointConfig
from scaletrain.parallel import distributed
from scaletrain.train.budget import Budget
from scaletrain.train.callbacks import ProgressBar, TimeLimit
from scaletrain.train.checkpoint import Checkpoint
from scaletrain.train.loop import Callback, LoopSettings


@contextlib.contextmanager
def process_group(device: str):
    """Join the process group a launcher describes for the run (a no-op in one process), and
    leave it after the others, or at once if this rank failed (the others may never arrive)."""
    created = distributed.init(device)
    try:
        yield distributed.world()
    except BaseException:
        distributed.finish(created, wait=False)
        raise
    distributed.finish(created)


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a run saves resumable state, and whether it resumes from it."""

    folder: Path
    every: CheckpointConfig
    config: dict                  # the resolved config, saved beside each checkpoint
    resume: bool = False
    generators: dict = field(default_factory=dict)  # the batches' own generators, restored on resume


@dataclass
class LoopPlan:
    """What a regime hands the assembly beside its model and batches."""

    budget: Budget
    checkpointing: Checkpointing | None = None
    callbacks: list[Callback] = field(default_factory=list)  # the caller's (a tuner's pruning, a test's)
    progress: str | None = None   # the progress bar's label; None: quiet


def loop_settings(t, budget: Budget, *, clip: float | None = None, compile_ok: bool = True) -> LoopSettings:
    """The loop's settings from the resolved train config; `clip` replaces the config's."""
    return LoopSettings(epochs=t.epochs, lr=t.lr, schedule=t.schedule, warmup=t.warmup,
                        milestones=tuple(t.step_milestones), gamma=t.step_gamma, grad_accum=t.grad_accum,
                        clip=t.clip if clip is None else clip, l1=t.l1, precision=t.precision,
                        time_limit=budget.training_limit(), time_spent=budget.spent_before,
                        device=torch.device(t.device).type, on_nan=t.on_nan,
                        compile=t.compile == "on" and compile_ok, sync=distributed.world().active)


def callbacks(plan: LoopPlan, own: list[Callback], stateful: dict, *, after_restore: tuple[Callback, ...] = (),
              after_training: Callable[[], float] | None = None, checkpoints: bool = True) -> list[Callback]:
    """The regime's own callbacks (history, early stopping: they see each epoch first), the time
    limit, checkpoints (`stateful` saved with them; a resume restores the step there), those
    that read the restored step (`after_restore`), the caller's, then progress."""
    listed = list(own)
    if plan.budget.limited:
        listed.append(TimeLimit(plan.budget.training_limit(), after_training, budget=plan.budget.limit))
    c = plan.checkpointing
    if checkpoints and c is not None:
        listed.append(Checkpoint(c.folder, c.every.every_steps, c.every.every_minutes, c.every.keep, config=c.config,
                                 stateful=stateful, generators=c.generators, resume=c.resume,
                                 write=distributed.world().main))  # every rank restores what rank 0 wrote
    listed += [*after_restore, *plan.callbacks]
    if plan.progress is not None and distributed.world().main:
        listed.append(ProgressBar(plan.progress))
    return listed
