"""`scaletrain serve`: a run behind a real HTTP server (FastAPI on uvicorn)."""
from __future__ import annotations

import os
from pathlib import Path

from scaletrain.serve.app import MAX_BODY, create_app, load_app

GRACE_SECONDS = 30  # on SIGTERM, in-flight requests get this long to finish


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, strict: bool = False,
          max_body: int = MAX_BODY, workers_threads: int | None = None) -> None:
    """Serve the run until SIGTERM or Ctrl-C; requests in flight are finished first."""
    import torch
    import uvicorn

    torch.set_num_threads(workers_threads or os.cpu_count() or 1)
    app = load_app(run_dir, strict=strict, max_body=max_body)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=GRACE_SECONDS)


__all__ = ["serve", "create_app", "load_app", "MAX_BODY"]
