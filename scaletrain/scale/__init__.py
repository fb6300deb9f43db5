"""`scaletrain scale DATA`: how the holdout loss falls with model size and data size, measured
on a grid, fitted (scaletrain/fitting/scaling_law.py), checked on the largest cell, and said in sentences."""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from scaletrain.config import Config, build_config
from scaletrain.errors import ConfigError
from scaletrain.io import write_json, write_text
from scaletrain.runtime import cores
from scaletrain.scale.analysis import analyse, sentences
from scaletrain.scale.corpus import is_corpus, measure_corpus_widths, plan_corpus_study
from scaletrain.scale.report import scale_page
from scaletrain.scale.study import USE_OF_LIMIT, cell_limits, measure_widths, ordered_cells, plan_study, ray_cells, startup_seconds
from scaletrain.scale.workers import CellWorkers
from scaletrain.train.budget import Budget

__all__ = ["scale"]


def scale(data, target: str | None = None, *, config: Config | None = None, widths: list[int] | None = None,
          fractions: list[float] | None = None, seeds: int = 1, time_limit: float | None = None,
          backend: str = "local", workers: int | None = None, out: str | Path = "scale",
          config_out: str | Path | None = None, progress=None) -> dict:
    """Run the study, write OUT/scale.json and OUT/report.html (and the recommended config to
    `config_out`); return scale.json's content."""
    budget, started = Budget(time_limit), time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = _as_path(data, out)
    workers = workers or min(cores(), 4)
    corpus = is_corpus(data, target)  # unlabelled text: each cell a pretraining run
    plan = (plan_corpus_study(data, config or Config(), widths, fractions, seeds, workers, out) if corpus else
            plan_study(str(data), target, config or Config(), widths, fractions, seeds, workers))
    plan.cells_dir = str(out / "cells")
    if backend not in ("local", "optuna", "ray"):  # optuna: tune's name for local processes
        raise ConfigError(f"--backend {backend}: use local (processes here) or ray (a running Ray cluster)")
    local = backend != "ray"
    workers = min(workers, len(plan.widths) * len(plan.fractions) * len(plan.seeds))  # no process without a cell
    with CellWorkers(workers, Path(plan.cells_dir)) if local else contextlib.nullcontext() as pool:
        measure = measure_corpus_widths if corpus else measure_widths  # while the workers start
        parameters, row_seconds = measure(plan, plan.widths + [2 * plan.widths[-1], 4 * plan.widths[-1]])
        if budget.limited:
            plan.cell_limits = share_the_time(plan, budget, row_seconds, workers, pool)
        cells = pool.run(json.dumps(asdict(plan)), ordered_cells(plan), progress) if local else ray_cells(plan)
    study = analyse(cells)
    study["unit"] = "tokens" if corpus else "rows"
    study["recommended"] = recommend(study, parameters, plan)
    words = sentences(study) + [study["recommended"]["why"]]
    study.update(cells=cells, sentences=words, family=plan.family, holdout_rows=plan.holdout, pool_rows=plan.pool,
                 workers=workers, backend=backend, time_limit=time_limit,
                 seconds=round(time.perf_counter() - started, 2))
    write_json(out / "scale.json", study)
    write_text(out / "report.html", scale_page(study, words, Path(str(data)).name))
    if config_out:
        tree = build_config(plan.config).with_values({"model.name": plan.family,
                                                  "model.width": study["recommended"]["width"]}).to_dict()
        write_text(Path(config_out), yaml.safe_dump(tree, sort_keys=False))
    return study


def share_the_time(plan, budget: Budget, row_seconds: dict, workers: int, pool: CellWorkers | None) -> dict:
    """Each cell's seconds, once what the workers need before training is taken off; a limit
    too short for that is refused rather than overrun."""
    reading = row_seconds.pop("reading")
    if pool:  # started beside the measuring: what is left of their start-up is waited for here
        pool.ready()
        once, each = 2 * reading, 1.0  # a worker reads the data once; each cell sets up its fit and is scored
    else:  # a Ray task may land in a fresh worker process
        once, each = 0.0, startup_seconds() + 2 * reading + 1.0
    cells, left = len(plan.widths) * len(plan.fractions) * len(plan.seeds), budget.left() * USE_OF_LIMIT
    needed = once + each * cells / workers
    if needed > 0.5 * left:
        raise ConfigError(f"--time-limit {budget.limit:.0f}s is too short for {cells} cells on {workers} processes: they "
                          f"take ~{needed:.1f} s to start, read the data and score before they train; give at least "
                          f"{budget.elapsed() + 2 * needed / USE_OF_LIMIT:.0f}s, or fewer sizes or fractions")
    return cell_limits(plan.widths, plan.fractions, plan.seeds, row_seconds, left, workers, each + once * workers / cells)


def recommend(study: dict, parameters: dict[int, int], plan) -> dict:
    """The width to train on all the pool's rows: the measured widths and two larger ones,
    each's loss predicted by the law at all rows; the smallest within 1% of the best."""
    from scaletrain.fitting.scaling_law import Law

    law, rows = Law(**study["law"]), plan.pool
    predicted = {w: float(law.loss(parameters[w], rows)) for w in sorted(parameters)}
    best = min(predicted.values())
    width = min(w for w, v in predicted.items() if v <= best * 1.01)
    return {"width": width, "parameters": parameters[width], "rows": rows, "predicted_loss": predicted[width],
            "predicted_by_width": predicted,
            "why": f"Recommended for all {rows:,} {study.get('unit', 'rows')}: "
                   f"{plan.family} width {width} ({parameters[width]:,} parameters), "
                   f"predicted loss {predicted[width]:.4f} — the smallest within 1% of the best of widths "
                   f"{', '.join(map(str, sorted(parameters)))}."}


def _as_path(data, out: Path):
    """Cells read the data in their own processes: a DataFrame is written once as Parquet."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        path = out / "data.parquet"
        data.to_parquet(path, index=False)
        return path
    return data
