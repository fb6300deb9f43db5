"""`scaletrain serve`: a run behind a real HTTP server (FastAPI on uvicorn)."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

from fastapi import FastAPI

from scaletrain.errors import ConfigError
from scaletrain.serve.app import create_app
from scaletrain.serve.limits import Limits

GRACE_SECONDS = 30  # on SIGTERM, in-flight requests get this long to finish
MAX_AUTO_WORKERS = 4  # each worker holds the model and torch (~0.5 GB); past the cores they only add memory
WORKER_ENV = "SCALETRAIN_SERVE_WORKER"  # how `serve --workers N` tells its worker processes what to serve


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, strict: bool = False,
          limits: Limits = Limits(), workers: int = 1, engine: str = "graph", announce=print) -> None:
    """Serve the run until SIGTERM or Ctrl-C; requests in flight are finished first. With
    `workers` > 1, uvicorn runs that many processes on the one port, each with its share of
    the cores' threads (the graph is exported once, here, before they start)."""
    import uvicorn

    options = {"host": host, "port": port, "log_level": "warning", "access_log": False,
               "timeout_graceful_shutdown": GRACE_SECONDS}
    if workers == 1:
        _set_threads(1)
        uvicorn.run(load_app(run_dir, strict=strict, limits=limits, engine=engine, announce=announce), **options)
        return
    _check_first(run_dir, engine, announce)
    os.environ[WORKER_ENV] = json.dumps({"run_dir": str(run_dir), "strict": strict, "engine": engine,
                                         "limits": dataclasses.asdict(limits), "workers": workers})
    uvicorn.run("scaletrain.serve:worker_app", factory=True, workers=workers, **options)


def worker_app() -> FastAPI:
    """One of `serve --workers N`'s processes: the app, from what the parent left in WORKER_ENV."""
    given = json.loads(os.environ[WORKER_ENV])
    _set_threads(given["workers"])
    _stop_with_the_parent()
    return load_app(given["run_dir"], strict=given["strict"], limits=Limits(**given["limits"]), engine=given["engine"])


def _stop_with_the_parent() -> None:
    """A worker stops (SIGTERM to itself: requests in flight are finished) once the process that
    started it is gone. Killed with SIGKILL, `serve` cannot stop its workers, and they went on
    holding the port and ~0.6 GB each (two were found 30 minutes after a test run)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="scaletrain-parent-watch", daemon=True).start()


def _check_first(run_dir: str | Path, engine: str, announce) -> None:
    """Before workers start: the run loaded (a damaged directory is refused here, once, rather
    than by each worker over and over) and its graph exported, so that they find it kept."""
    if _is_recommender(run_dir):
        from scaletrain.recommend.run import RecommenderRun

        RecommenderRun.load(run_dir)
        return
    from scaletrain.run import Run
    from scaletrain.serve.graph import graph_engine

    run = Run.load(run_dir)
    if engine == "graph":
        graph_engine(run, announce=announce)


def auto_workers() -> int:
    """One worker per core this process may use, at most MAX_AUTO_WORKERS."""
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


def _set_threads(workers: int) -> None:
    """torch's threads (the fallback path, explanations): the cores shared among the workers."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def load_app(run_dir: str | Path, *, engine: str = "graph", announce=lambda message: None, **options) -> FastAPI:
    """The app serving the run stored in `run_dir` (a recommender's: /recommend), predicting
    through its exported ONNX graph (`engine="graph"`, where the run has one) or through torch."""
    if _is_recommender(run_dir):
        from scaletrain.recommend.run import RecommenderRun
        from scaletrain.serve.recommend_app import create_recommend_app

        return create_recommend_app(RecommenderRun.load(run_dir), options.get("limits", Limits()))
    from scaletrain.run import Run
    from scaletrain.serve.graph import graph_engine

    run = Run.load(run_dir)
    return create_app(run, engine=graph_engine(run, announce=announce) if engine == "graph" else None, **options)


def _is_recommender(run_dir: str | Path) -> bool:
    from scaletrain.recommend.store import is_recommender

    return is_recommender(run_dir)


def check_address(host: str, port: int) -> None:
    """A clear error before uvicorn's log line when the address is taken or not this machine's."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from None


__all__ = ["serve", "auto_workers", "check_address", "create_app", "load_app", "Limits"]
