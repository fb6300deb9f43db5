"""`scaletrain serve`: a run behind a real HTTP server (FastAPI on uvicorn)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from fastapi import FastAPI

from scaletrain.errors import ConfigError
from scaletrain.serve.app import create_app
from scaletrain.serve.limits import Limits

GRACE_SECONDS = 30  # on SIGTERM, in-flight requests get this long to finish


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, strict: bool = False,
          limits: Limits = Limits(), torch_threads: int | None = None) -> None:
    """Serve the run until SIGTERM or Ctrl-C; requests in flight are finished first."""
    import torch
    import uvicorn

    torch.set_num_threads(torch_threads or os.cpu_count() or 1)
    app = load_app(run_dir, strict=strict, limits=limits)
    check_address(host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=GRACE_SECONDS)


def load_app(run_dir: str | Path, **options) -> FastAPI:
    """The app serving the run stored in `run_dir` (a recommender's: /recommend)."""
    from scaletrain.recommend.store import is_recommender

    if is_recommender(run_dir):
        from scaletrain.recommend.run import RecommenderRun
        from scaletrain.serve.recommend_app import create_recommend_app

        return create_recommend_app(RecommenderRun.load(run_dir), options.get("limits", Limits()))
    from scaletrain.run import Run

    return create_app(Run.load(run_dir), **options)



def check_address(host: str, port: int) -> None:
    """A clear error before uvicorn's log line when the address is taken or not this machine's."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from None


__all__ = ["serve", "check_address", "create_app", "load_app", "Limits"]
