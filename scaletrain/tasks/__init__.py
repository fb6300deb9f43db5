"""Tasks as plug-ins: one module per task behind one registry. Code elsewhere asks the task
(`task_of(name).classifies`, `.headline`, `.output_size(...)`) instead of comparing names."""
from __future__ import annotations

from scaletrain.errors import ConfigError
from scaletrain.tasks.base import Task
from scaletrain.tasks.binary import BINARY
from scaletrain.tasks.ctr import CTR
from scaletrain.tasks.multiclass import MULTICLASS
from scaletrain.tasks.recommend import RECOMMEND
from scaletrain.tasks.regression import REGRESSION

TASKS: dict[str, Task] = {t.name: t for t in (REGRESSION, BINARY, MULTICLASS, RECOMMEND, CTR)}  # one line per task


def task_of(name: str) -> Task:
    """The task a run or config names."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}'; one of: {', '.join(TASKS)}") from None


__all__ = ["BINARY", "CTR", "MULTICLASS", "RECOMMEND", "REGRESSION", "TASKS", "Task", "task_of"]
