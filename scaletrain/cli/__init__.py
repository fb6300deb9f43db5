"""The command line: one module per group of verbs, each verb a thin call into the API."""
from scaletrain.cli import fit, read, ship, study  # noqa: F401  (registers the verbs, in --help's order)
from scaletrain.cli.options import app, one_line_warnings


def main() -> None:
    one_line_warnings()
    app()
