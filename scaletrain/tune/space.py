"""Search spaces: which config keys a search varies, over which values.

A space maps dotted config keys (the ones `--set` takes) to a list of choices or a range:

    train.lr: {low: 1.0e-4, high: 3.0e-2, log: true}   # float range (log-uniform)
    model.width: [64, 128, 256]                          # choices
    model.depth: {low: 1, high: 3, int: true}            # integer range
    model.dropout: {low: 0.0, high: 0.5, grid: [0.0, 0.2, 0.4]}

Ranges are sampled by random and Bayesian search; grid search takes each range's `grid`
points, or three points spread over it (geometric for a log range). Every value is checked
against the config's own bounds when the space is read, so a bad space fails before any trial.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from scaletrain.errors import ConfigError

GRID_POINTS = 3


@dataclass(frozen=True)
class Param:
    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    grid: tuple | None = None

    def suggest(self, trial):
        """Draw this parameter's value for an Optuna trial."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def grid_values(self) -> list:
        if self.choices is not None:
            return list(self.choices)
        if self.grid is not None:
            return list(self.grid)
        spread = np.geomspace if self.log else np.linspace
        values = spread(self.low, self.high, GRID_POINTS)
        return sorted({int(round(v)) for v in values}) if self.integer else [float(f"{v:.4g}") for v in values]


def _param(key: str, spec, where: str) -> Param:
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: '{key}' lists no values")
        return Param(key, choices=tuple(spec))
    if not isinstance(spec, dict) or "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: '{key}' must be a list of values or a mapping with low and high "
                          "(optional: log, int, grid)")
    unknown = set(spec) - {"low", "high", "log", "int", "grid"}
    if unknown:
        raise ConfigError(f"{where}: '{key}' has unknown field(s) {sorted(unknown)}; use low, high, log, int, grid")
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: '{key}' low/high must be numbers") from None
    if not low < high or (spec.get("log") and low <= 0):
        raise ConfigError(f"{where}: '{key}' needs low < high (and low > 0 with log: true)")
    grid = spec.get("grid")
    if grid is not None and (not isinstance(grid, list) or not grid
                             or not all(isinstance(v, (int, float)) and low <= v <= high for v in grid)):
        raise ConfigError(f"{where}: '{key}' grid must be a non-empty list of numbers between low and high")
    return Param(key, low=low, high=high, log=bool(spec.get("log")), integer=bool(spec.get("int")),
                 grid=tuple(grid) if grid else None)


class SearchSpace:
    """An ordered set of Params, validated against the config."""

    def __init__(self, spec: dict, where: str = "search space"):
        if not isinstance(spec, dict) or not spec:
            raise ConfigError(f"{where}: give a mapping of config keys (e.g. train.lr) to values or ranges")
        self.spec = spec  # as given: worker processes rebuild the same space from it
        self.params = [_param(str(key), value, where) for key, value in spec.items()]
        self._check(where)

    @classmethod
    def default(cls, spec: dict) -> "SearchSpace":
        """The default space of a modality (its `search_space`)."""
        return cls(spec, "default search space")

    @classmethod
    def from_file(cls, path: str | Path) -> "SearchSpace":
        try:
            spec = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read search space '{path}': {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"search space '{path}' is not valid YAML: {exc}") from None
        return cls(spec, f"search space '{path}'")

    def _check(self, where: str) -> None:
        """Set every extreme value on a config, so a key or value the config refuses fails now."""
        from scaletrain.config import Config

        for param in self.params:
            values = param.grid_values() + ([param.low, param.high] if param.choices is None else [])
            for value in values:
                try:
                    Config().with_values({param.key: value})
                except ConfigError as exc:
                    raise ConfigError(f"{where}: '{param.key}' = {value!r} is refused: {exc}") from None

    def suggest(self, trial) -> dict:
        return {param.key: param.suggest(trial) for param in self.params}

    def grid(self) -> dict[str, list]:
        return {param.key: param.grid_values() for param in self.params}

    def grid_size(self) -> int:
        return int(np.prod([len(values) for values in self.grid().values()]))
