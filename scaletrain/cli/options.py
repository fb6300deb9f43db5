"""What every command shares: the typer app, the consoles, and one-line errors."""
from __future__ import annotations

import errno
import functools
import warnings

import typer
from rich.console import Console
from rich.table import Table

from scaletrain.errors import RunDirError, ScaletrainError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and use neural models on tables, images, sound and sequences with one command.")
out_console = Console()
err_console = Console(stderr=True)
DEBUG = typer.Option(False, "--debug", help="Show the full traceback on errors.")

# data-parallel training (train, pretrain)
NPROC_PER_NODE = typer.Option(None, help="Data-parallel worker processes on this machine "
                                         "(torch.distributed's elastic launcher, as torchrun).")
NNODES = typer.Option(1, help="Machines taking part; each runs this same command.")
NODE_RANK = typer.Option(None, help="This machine's rank among --nnodes (0 writes the run).")
RDZV_ENDPOINT = typer.Option(None, help="HOST:PORT where the machines meet (the same on all).")
MAX_RESTARTS = typer.Option(0, help="Restart the workers up to K times after a failure; they resume from the last "
                                    "checkpoint.")
RESUME = typer.Option(False, help="Continue from the newest valid checkpoint in --out (refused where there is none).")
RESUME_OR_START = typer.Option(False, "--resume-or-start", help="Resume where --out has a checkpoint, else start afresh.")
OVERWRITE = typer.Option(False, help="--out holds a run: replace it whole (without this, it is refused).")
TRAIN_BACKEND = typer.Option("torch", help="torch (torch.distributed) or ray (Ray Train on a running cluster, "
                                           "--nproc-per-node workers).")


def guarded(fn):
    """Turn ScaletrainError, and the machine's I/O errors (a full disk, a permission), into one
    line on stderr and exit code 2 (traceback only with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ScaletrainError, OSError) as exc:
            if kwargs.get("debug"):
                raise
            text = str(exc) if isinstance(exc, ScaletrainError) else os_error_line(exc)
            err_console.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
    return wrapper


def reads_run(fn):
    """For the verbs that read a run directory: a failure the checks before loading did not
    foresee is still one line naming the run (exit 2), never a traceback (--debug shows it)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ScaletrainError, OSError, typer.Exit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file made a reader raise
            if kwargs.get("debug"):
                raise
            detail = (str(exc).splitlines() or [""])[0][:200]
            raise RunDirError(f"'{kwargs.get('run')}' could not be used ({type(exc).__name__}: {detail}); its files "
                              "may be damaged — train it again, or run with --debug to see where") from None
    return wrapper


def os_error_line(exc: OSError) -> str:
    """An I/O error as what happened, where, and what to do."""
    where = f" ('{exc.filename}')" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{where}; free some (or write elsewhere) and run the command again — with "
                "--resume if it was training: files already written were replaced whole or not at all")
    return f"{exc.strerror or exc}{where}"


def one_line_warnings() -> None:
    """Warnings from scaletrain and the libraries under it as one `warning:` line each, not
    Python's two-line form with a source line."""
    def show(message, category, filename, lineno, file=None, line=None):
        err_console.print(f"[yellow]warning:[/] {str(message).splitlines()[0] if str(message) else category.__name__}",
                          highlight=False, soft_wrap=True)

    warnings.showwarning = show


def metrics_table(metrics: dict, title: str) -> Table:
    """Metrics as a table: one row per metric, one column per split."""
    table = Table(title=title or None)
    splits = [s for s in ("train", "val", "test") if metrics.get(s)]
    table.add_column("metric")
    for split in splits:
        table.add_column(split, justify="right")
    names = [k for k in dict.fromkeys(k for s in splits for k in metrics[s])
             if all(isinstance(metrics[s].get(k, 0.0), float) for s in splits)]
    for name in names:
        table.add_row(name, *(f"{metrics[s].get(name, float('nan')):.4f}" for s in splits))
    return table

# recommend's side tables (fit.py)
ITEMS_TABLE = typer.Option(None, "--items", help="recommend: a side table of item features (key: the item column), "
                                                 "read by the two-tower candidate; its new items join the catalogue.")
USERS_TABLE = typer.Option(None, "--users", help="recommend: a side table of user features (key: the user column), "
                                                 "read by the two-tower candidate; a user with no history is ranked by "
                                                 "them.")
