"""The commands that study data rather than train one model: scale, audit."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from scaletrain.cli.options import DEBUG, app, err_console, guarded, out_console


def _numbers(text: Optional[str], kind):
    if not text:
        return None
    from scaletrain.errors import ConfigError

    try:
        return [kind(_fraction(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"'{text}' is not a comma-separated list of numbers (e.g. 16,32,64 or 0.125,0.25,1)") from None


def _fraction(value: str) -> float:
    """'1/8' or '0.125'."""
    top, _, bottom = value.strip().partition("/")
    return float(top) / float(bottom) if bottom else float(top)


@app.command()
@guarded
def scale(
    data: str = typer.Argument(..., help="Table file or image data, as for train; or a text corpus (each cell pretrains)."),
    target: Optional[str] = typer.Option(None, help="Target column (tables)."),
    time_limit: Optional[str] = typer.Option(None, help="Budget for the whole study, e.g. 10m."),
    sizes: Optional[str] = typer.Option(None, help="Model widths, comma-separated (default: the modality's)."),
    fractions: Optional[str] = typer.Option(None, help="Data fractions, comma-separated (default 1/16,1/8,1/4,1/2,1)."),
    seeds: int = typer.Option(1, help="Seeds per cell (their mean is fitted)."),
    backend: str = typer.Option("local", help="local (processes; tune's name: optuna) or ray (tasks on a running Ray cluster)."),
    workers: Optional[int] = typer.Option(None, help="Cells at once (default: the cores, at most 4)."),
    out: Path = typer.Option(Path("scale"), help="Directory for scale.json and report.html."),
    config: Optional[Path] = typer.Option(None, help="YAML config every cell starts from."),
    set_: List[str] = typer.Option([], "--set", help="Fix a config key for every cell: section.key=value."),
    config_out: Optional[Path] = typer.Option(None, help="Write the recommended configuration here (for train --config)."),
    debug: bool = DEBUG,
):
    """Measure the holdout loss over model sizes × data fractions, fit L(N, D) = E + A/N^α + B/D^β, check it."""
    from scaletrain.config import make_config, parse_duration
    from scaletrain.scale import scale as run_study

    study = run_study(data, target, config=make_config(config, set_), widths=_numbers(sizes, int),
                      fractions=_numbers(fractions, float), seeds=seeds, time_limit=parse_duration(time_limit),
                      backend=backend, workers=workers, out=out, config_out=config_out,
                      progress=lambda done, total: err_console.print(f"cell {done}/{total}", highlight=False))
    for line in study["sentences"]:
        out_console.print(f"- {line}", highlight=False, soft_wrap=True)
    err_console.print(f"wrote {out / 'scale.json'} and {out / 'report.html'} in {study['seconds']:.0f}s"
                      + (f"; recommended config: {config_out}" if config_out else ""))


@app.command()
@guarded
def audit(
    data: str = typer.Argument(..., help="Table file or image data, as for train."),
    target: Optional[str] = typer.Option(None, help="Target column (tables)."),
    test: Optional[str] = typer.Option(None, help="A separate test file, as for train: rows repeated across DATA and "
                                                   "it are found too."),
    out: Path = typer.Option(Path("audit"), help="Directory for audit.json and audit.html."),
    folds: int = typer.Option(5, help="Folds of out-of-fold predictions for the label check (0: no label check)."),
    config: Optional[Path] = typer.Option(None, help="YAML config of the fits and splits."),
    set_: List[str] = typer.Option([], "--set", help="A config key for the fits and splits: section.key=value."),
    debug: bool = DEBUG,
):
    """Audit DATA: duplicates within and across the splits, likely label errors, leaked and empty columns, balance."""
    from scaletrain.audit_data import audit_data
    from scaletrain.config import make_config

    findings = audit_data(data, target, make_config(config, set_), out, folds, test)
    for f in findings:
        named = f.get("columns") or f.get("rows") or []
        shown = f" [{', '.join(map(str, named[:8]))}{' …' if len(named) > 8 else ''}]" if named else ""
        out_console.print(f"{f['severity']:>6}  {f['what']}{shown}\n        → {f['do']}", highlight=False, soft_wrap=True)
    err_console.print(f"wrote {out / 'audit.json'} and {out / 'audit.html'} ({len(findings)} findings)")
