"""`scaletrain scale`: a grid of model sizes × data fractions, each cell a normal fit, its loss
measured on one fixed holdout; then the law fitted without the largest cell and checked on it.

The holdout is cut once (seeded) from the data; every cell trains on a geometric fraction of
the rest (its own validation split for early stopping inside it, as any fit), so all cells are
compared on the same rows. Cells run in a few long-lived processes (workers.py: fresh
interpreters, each reading the data once for all its cells), or as Ray tasks. The time limit
covers the whole study: each cell gets a share of it in proportion to its measured cost
(seconds per training row of its width × its rows), the shares summing to what the workers
can run in the time, so every cell trains about as many epochs.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np

from scaletrain.config import Config, build_config
from scaletrain.errors import ConfigError
from scaletrain.runtime import cores
from scaletrain.scale.plan import FRACTIONS, StudyPlan, checked_grid

HOLDOUT_FRACTION, HOLDOUT_MAX = 0.1, 10_000
USE_OF_LIMIT = 0.9  # of the time limit, what the cells get: the rest measures, fits the law, writes
MIN_CELL_SECONDS = 1.0


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(holdout rows, pool rows in a fixed shuffled order: a fraction is a prefix)."""
    order = np.random.default_rng(seed).permutation(n)
    held = min(HOLDOUT_MAX, max(1, int(n * HOLDOUT_FRACTION)))
    return order[:held], order[held:]


def holdout_loss(run, source) -> float:
    """Cross-entropy of the true class (classification) or mean squared error on the holdout."""
    a = run.assess(source)
    if a.proba is None:
        return float(np.mean((a.truth - a.predicted) ** 2))
    return float(-np.mean(np.log(np.clip(a.proba[np.arange(len(a.truth)), a.truth.astype(int)], 1e-12, 1.0))))


def run_cell(plan_text: str, width: int, fraction: float, seed: int) -> dict:
    """One cell, in a worker: read the data, take the fraction of the pool, fit, measure."""
    import torch

    from scaletrain.data.sources import subset_source
    from scaletrain.fitting.pipeline import fit_run

    plan = StudyPlan(**json.loads(plan_text))
    torch.set_num_threads(plan.threads)
    limit = plan.cell_limits.get(cell_key(width, fraction, seed))
    if plan.kind == "pretrain":
        from scaletrain.scale.corpus import run_pretrain_cell

        return run_pretrain_cell(plan, width, fraction, seed, limit) | {"process": os.getpid()}
    source = _study_source(plan.data)
    held, pool = _split(len(source), 0)
    rows = max(2, int(round(len(pool) * fraction)))
    train = subset_source(source, pool[:rows], f"{source.name} ({fraction:.3g})")
    holdout = subset_source(source, held, f"{source.name} (holdout)")
    # the study's holdout is the test: no rows of the fraction set aside for another
    cfg = build_config(plan.config).with_values({"model.name": plan.family, "model.width": width, "train.seed": seed,
                                                 "data.test_fraction": 0.0,
                                                 "train.threads": plan.threads, "train.time_limit": limit,
                                                 **({"data.target": plan.target} if plan.target else {})})
    started = time.time()
    run = fit_run(cfg, train)
    loss = holdout_loss(run, holdout)
    return {"width": width, "fraction": fraction, "seed": seed, "rows": rows, "parameters": int(run.metrics["parameters"]),
            "loss": loss, "seconds": round(time.time() - started, 3), "epochs": run.metrics["epochs"],
            "limit": limit, "started": started, "ended": time.time(), "process": os.getpid()}


@functools.lru_cache(maxsize=1)
def _study_source(data: str):
    """The study's data, read once by a worker for all the cells it runs (cells only subset it)."""
    from scaletrain.modalities import load_source

    return load_source(data)


def startup_seconds() -> float:
    """What a cell's process spends before training: a fresh interpreter importing torch and
    scaletrain (measured once, here)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import scaletrain.fitting.pipeline"], check=False, capture_output=True)
    return time.perf_counter() - started


def cell_limits(widths: list[int], fractions: list[float], seeds: list[int], row_seconds: dict[int, float],
                seconds: float | None, workers: int, overhead: float = 0.0) -> dict:
    """Each cell's share of the time the workers have, in proportion to its measured cost
    (seconds per row of its width × its rows): every cell gets about as many epochs. Each
    cell's `overhead` (starting, reading, evaluating) comes off the time first."""
    if not seconds:
        return {}
    cost = {(w, f, s): row_seconds[w] * f for w in widths for f in fractions for s in seeds}
    total = sum(cost.values())
    training = max(seconds * workers - overhead * len(cost), MIN_CELL_SECONDS * len(cost))
    return {cell_key(w, f, s): max(MIN_CELL_SECONDS, training * c / total) for (w, f, s), c in cost.items()}


def cell_key(width, fraction, seed) -> str:
    return f"{int(width)},{float(fraction):.6g},{int(seed)}"


def ordered_cells(plan: StudyPlan) -> list[tuple]:
    """Every cell of the grid, largest first (the longest start first)."""
    return sorted(((w, f, s) for w in plan.widths for f in plan.fractions for s in plan.seeds),
                  key=lambda c: -plan.cell_limits.get(cell_key(*c), plan.widths.index(c[0]) + c[1]))


def ray_cells(plan: StudyPlan) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'scaletrain[ray]'") from None
    if not ray.is_initialized():
        ray.init(address="auto", ignore_reinit_error=True, log_to_driver=False)
    remote, text = ray.remote(num_cpus=1)(run_cell), json.dumps(asdict(plan))
    return ray.get([remote.remote(text, *cell) for cell in ordered_cells(plan)])


def plan_study(data: str, target: str | None, config: Config, widths: list[int] | None, fractions: list[float] | None,
               seeds: int, workers: int) -> StudyPlan:
    """The plan: sizes (the recipe's family unless the config names one), fractions, holdout."""
    from scaletrain.modalities import load_source, modality

    source = load_source(data)
    if source.streamed:
        raise ConfigError("scale reads the data into memory to cut its fractions; give a table or image folder")
    kind = modality(source.kind)
    n = len(source)
    held, pool = _split(n, 0)
    family = config.model.name if config.model.name != "auto" else kind.recipe.model
    widths, fractions = checked_grid(widths or kind.scaling_widths, fractions or FRACTIONS)
    return StudyPlan(data, target, config.to_dict(), family, widths, fractions, list(range(seeds)), len(held),
                     len(pool), max(1, cores() // workers))


def measure_widths(plan: StudyPlan, widths: list[int]) -> tuple[dict[int, int], dict[int, float]]:
    """Each width's parameter count on this data, and its measured training seconds per row
    (a few steps of a batch, with the cells' threads): what a cell's time share is sized by.
    Parameters × rows alone starve the small models, whose steps cost more than their size."""
    import time as clock

    import torch

    from scaletrain.data.sources import subset_source
    from scaletrain.fitting.recipe import candidate_configs
    from scaletrain.modalities import load_source, modality, prepare
    from scaletrain.tasks.regression import level_values
    from scaletrain.train.losses import training_loss
    from scaletrain.train.setup import placed_model

    started = clock.perf_counter()
    source = load_source(plan.data)
    _, pool = _split(len(source), 0)
    small = subset_source(source, pool[:min(len(pool), 2000)])
    cfg = build_config(plan.config).with_values({"model.name": plan.family, **({"data.target": plan.target}
                                                                                 if plan.target else {})})
    prepared = prepare(small, None, cfg.data, 0)
    kind, counts, seconds = modality(prepared.kind), {}, {"reading": clock.perf_counter() - started}
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        for width in widths:
            resolved = candidate_configs(cfg.with_values({"model.width": width}), kind.facts(prepared))[0]
            model = placed_model(resolved, prepared)[0].train()
            counts[width] = sum(p.numel() for p in model.parameters())
            if width not in plan.widths:  # a larger width only the recommendation considers: not timed
                continue
            rows = min(256, len(prepared.train_y))
            batch = kind.eval_inputs([x[:rows] for x in prepared.train_inputs], resolved.train)
            loss_fn = training_loss(resolved.train, prepared.task, None, levels=level_values(prepared.target))
            optimizer = torch.optim.SGD(model.parameters(), 1e-3)
            for step in range(4):  # the first is warm-up
                if step == 1:
                    started = clock.perf_counter()
                optimizer.zero_grad()
                loss_fn(model(*batch), prepared.train_y[:rows]).backward()
                optimizer.step()
            seconds[width] = (clock.perf_counter() - started) / (3 * rows)
    finally:
        torch.set_num_threads(threads)
    return counts, seconds

