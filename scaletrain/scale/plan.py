"""What a scaling study runs: its grid of widths × data fractions × seeds, shared by the study
of rows (study.py) and of a corpus's tokens (corpus.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

from scaletrain.errors import ConfigError

FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


@dataclass
class StudyPlan:
    data: str
    target: str | None
    config: dict
    family: str
    widths: list[int]
    fractions: list[float]
    seeds: list[int]
    holdout: int          # rows in the fixed holdout
    pool: int             # rows the cells draw from
    threads: int
    cells_dir: str = ""   # where each cell's result is written
    cell_limits: dict = field(default_factory=dict)  # "width,fraction,seed" -> seconds
    kind: str = "fit"     # fit: train on rows of a table or images; pretrain: masked LM on a corpus (corpus.py)


def checked_grid(widths, fractions) -> tuple[list[int], list[float]]:
    widths, fractions = sorted(int(w) for w in widths), sorted(float(f) for f in fractions)
    if not all(0 < f <= 1 for f in fractions):
        raise ConfigError(f"data fractions must lie in (0, 1]; got {fractions}")
    if len(widths) < 2 or len(fractions) < 2:
        raise ConfigError("a scaling study needs at least 2 sizes and 2 data fractions")
    return widths, fractions
