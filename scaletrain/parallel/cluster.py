"""A running Ray cluster, for the commands that spread work over it (`--backend ray`).

Ray schedules the tasks and moves their arguments and results (it serializes them itself);
nothing of ours is written with pickle. Every worker must see the same files: on one machine
any path, on several a shared file system or an fsspec URL (s3://, gs://).
"""
from __future__ import annotations

import os
from typing import Callable

from scaletrain.errors import ConfigError


def connect() -> None:
    """Join the running Ray cluster (RAY_ADDRESS, else the local one); a clear error if none."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'scaletrain[ray]'") from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--backend ray needs a running Ray cluster ({exc}); start one with `ray start --head` "
                          "or set RAY_ADDRESS to its address") from None


def map_on_ray(fn: Callable, jobs: list, on_done: Callable[[int, object], None] | None = None) -> list:
    """fn(job) for every job as a Ray task of one CPU each; the results in the jobs' order.
    `on_done(index, result)` is called as each task finishes (in whatever order they do); the
    first task's error is raised here as the same exception."""
    import ray

    connect()
    task = ray.remote(num_cpus=1, max_retries=0)(fn)
    pending = {task.remote(job): i for i, job in enumerate(jobs)}
    results: list = [None] * len(jobs)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            try:
                results[index] = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
            if on_done is not None:
                on_done(index, results[index])
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return results
