"""What every command shares: the typer app, the consoles, and one-line errors."""
from __future__ import annotations

import functools

import typer
from rich.console import Console

from scaletrain.errors import ScaletrainError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and use neural models on tables and images with one command.")
out_console = Console()
err_console = Console(stderr=True)
DEBUG = typer.Option(False, "--debug", help="Show the full traceback on errors.")

def guarded(fn):
    """Turn ScaletrainError into one line on stderr and exit code 2 (traceback only with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ScaletrainError as exc:
            if kwargs.get("debug"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
    return wrapper
