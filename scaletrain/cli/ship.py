"""The commands that use a trained run beyond predicting: explain, export, compress, serve."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scaletrain.cli.options import DEBUG, app, err_console, guarded, reads_run


@app.command()
@guarded
@reads_run
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
@reads_run
def serve(
    run: Path = typer.Argument(..., help="Run directory."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    strict: bool = typer.Option(False, help="Refuse (422) rows that do not fit the trained schema instead of warning."),
    max_body_mb: float = typer.Option(10.0, help="Largest request body accepted, in MB."),
    max_rows: int = typer.Option(100_000, help="Most rows one request may hold (Parquet: as its footer declares)."),
    max_pixels: int = typer.Option(40_000_000, help="Most pixels an uploaded image may declare (checked before decoding)."),
    max_text_chars: int = typer.Option(100_000, help="Longest text value a request may hold, in characters."),
    read_timeout: float = typer.Option(30.0, help="Seconds a request body may take to arrive (then 408)."),
    max_explain_rows: int = typer.Option(1_000, help="Most rows one request may ask reasons for (?explain=K)."),
    workers: int = typer.Option(0, min=0, max=64, help="Server processes on the one port, each with the model; 0: "
                                                       "one per core, at most 4 (more than the cores only adds memory)."),
    engine: str = typer.Option("graph", help="graph: the run's ONNX export in onnxruntime (exported on the first "
                                             "start, kept in RUN); torch: the run's model as trained."),
    debug: bool = DEBUG,
):
    """Serve RUN over HTTP: POST /predict, GET /health, GET /metadata, a web page at /."""
    from scaletrain.errors import ConfigError
    from scaletrain.rundir import RunDir
    from scaletrain.serve import Limits, auto_workers, check_address
    from scaletrain.serve import serve as serve_run

    RunDir(run).check_complete()  # said before "serving", not after
    if engine not in ("graph", "torch"):
        raise ConfigError(f"--engine {engine!r}: use graph or torch")
    check_address(host, port)
    limits = Limits(int(max_body_mb * 2 ** 20), max_rows, max_pixels, max_text_chars, read_timeout, max_explain_rows)
    workers = workers or auto_workers()
    err_console.print(f"serving {run} at http://{host}:{port}/ with {workers} worker{'s' * (workers > 1)} "
                      "(OpenAPI at /docs; Ctrl-C or SIGTERM stops it)")
    serve_run(run, host, port, strict=strict, limits=limits, workers=workers, engine=engine, announce=err_console.print)


@app.command()
@guarded
def compress(
    run: Path = typer.Argument(..., help="Run directory."),
    data: str = typer.Argument(..., help="The data RUN was trained on (its split is recovered from the run's seed)."),
    out: Path = typer.Option(..., help="Folder for the variants (run directories) and compress.json."),
    distill: Optional[float] = typer.Option(None, help="Distill into a student with at most this share of the "
                                                       "parameters (0.25: a quarter)."),
    prune: Optional[float] = typer.Option(None, help="Remove this share of every hidden layer's neurons/channels, "
                                                     "then fine-tune briefly (0.5: half)."),
    quantize: Optional[str] = typer.Option(None, help="int8: dynamic for dense layers, static per-channel for convolutions."),
    test: Optional[str] = typer.Option(None, help="Score the variants on this labelled data instead of the test split."),
    tolerance: float = typer.Option(0.01, help="Recommend a variant only within this much of the original's score."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    debug: bool = DEBUG,
):
    """Make RUN smaller and faster: each variant a run directory, measured side by side with the original."""
    from rich.table import Table

    from scaletrain.cli.options import out_console
    from scaletrain.compress import compress_run

    summary = compress_run(run, data, out, distill=distill, prune=prune, quantize=quantize, test=test,
                           tolerance=tolerance, verbose=not quiet)
    score = summary["score"]
    table = Table(title=f"{run} compressed (onnxruntime, this machine; ratios to the original)")
    for column in ("variant", "params", "MB", "ms/row", "ms/batch", "×batch", score[:8], "same"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True,
                         min_width=9 if column == "variant" else None)
    for name, f in summary["variants"].items():
        table.add_row(name, f"{f['parameters']:,}", f"{f['size_mb']:.3f}", f"{f['ms_per_row']:.3f}", f"{f['ms_per_batch']:.2f}",
                      f"{f['latency_ratio_batch']:.2f}", f"{f[score]:.4f}", f"{f.get('same_class_as_original', 1):.4f}")
    out_console.print(table)
    pick = summary["recommended"]
    out_console.print(f"recommended: {pick['variant'] or 'the original'} — {pick['why']}")
    err_console.print(f"wrote {out / 'compress.json'}")


@app.command()
@guarded
@reads_run
def explain(
    run: Path = typer.Argument(..., help="Run directory (a table or image run)."),
    data: str = typer.Argument(..., help="Raw rows or images to explain (labelled rows add permutation importance)."),
    out: Optional[Path] = typer.Option(None, help="Folder for explain.html, explanations.csv, importance.json "
                                                  "(default RUN/explain)."),
    rows: int = typer.Option(1000, help="Explain at most this many rows or images."),
    debug: bool = DEBUG,
):
    """Explain RUN's predictions on DATA: columns (SHAP values against training rows), words (each taken out), pixels (heatmaps)."""
    from scaletrain.explain import explain_run
    from scaletrain.recommend.store import is_recommender

    if is_recommender(run):  # each recommendation with the user's past items behind it
        from scaletrain.recommend.run import RecommenderRun

        summary = RecommenderRun.load(run).explain_to(out or Path(run) / "explain", data)
    else:
        summary = explain_run(run, data, out, rows)
    err_console.print(f"explained {summary['rows']} rows; {summary['headline']}")
    err_console.print(f"wrote {out or Path(run) / 'explain'}/explain.html and the numbers beside it")
