"""The commands that ship a trained run: export, compress, serve."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scaletrain.cli_base import DEBUG, app, err_console, guarded


@app.command()
@guarded
def export(
    run: Path = typer.Argument(..., help="Run directory."),
    format: str = typer.Option("onnx", "--format", help="onnx (the one format so far)."),
    out: Optional[Path] = typer.Option(None, help="The file to write (default RUN/model.onnx)."),
    debug: bool = DEBUG,
):
    """Export RUN as one ONNX file that takes raw input (columns, pixels or token ids), with a model card."""
    from scaletrain.errors import ConfigError
    from scaletrain.export import export_onnx

    if format != "onnx":
        raise ConfigError(f"--format {format}: only onnx is supported")
    path = export_onnx(run, out)
    err_console.print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.card.json').name}")


@app.command()
@guarded
def serve(
    run: Path = typer.Argument(..., help="Run directory."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    strict: bool = typer.Option(False, help="Refuse (422) rows that do not fit the trained schema instead of warning."),
    max_body_mb: float = typer.Option(10.0, help="Largest request body accepted, in MB."),
    debug: bool = DEBUG,
):
    """Serve RUN over HTTP: POST /predict, GET /health, GET /metadata, a web page at /."""
    from scaletrain.serve import serve as serve_run

    err_console.print(f"serving {run} at http://{host}:{port}/ (OpenAPI at /docs; Ctrl-C or SIGTERM stops it)")
    serve_run(run, host, port, strict=strict, max_body=int(max_body_mb * 2 ** 20))
