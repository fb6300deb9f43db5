"""Typed errors: each says what went wrong, where, and what to do next."""


class ScaletrainError(Exception):
    """Base of every error scaletrain raises on purpose; the CLI prints it as one line."""


class ConfigError(ScaletrainError, ValueError):
    """A config key or value is invalid."""


class DataError(ScaletrainError, ValueError):
    """Input data cannot be read or used (names the file, row or column)."""


def path_not_found(source) -> DataError:
    """The one wording for a data path that is not there (the CLI checks before its imports)."""
    return DataError(f"'{source}' does not exist; check the path")


class InputTooLarge(DataError):
    """One input is over a limit (pixels, seconds), refused before it is decoded."""


class TargetError(DataError):
    """The target column is missing or unusable."""


class RunDirError(ScaletrainError, FileNotFoundError):
    """A run directory is missing or incomplete."""


class TrainingError(ScaletrainError, RuntimeError):
    """Training cannot go on (a NaN/inf loss); says at which step and what to change."""


class ExportError(ScaletrainError, ValueError):
    """A run cannot be exported, compressed or served as asked (says what would make it possible)."""
