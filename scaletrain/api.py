"""The Python API, a thin facade: keywords and files become a typed Config here, and each
function is one call into the pipeline, cross-validation, search or a stored run."""
from __future__ import annotations

from importlib import import_module
from pathlib import Path

from scaletrain.config import Config, make_config, parse_duration
from scaletrain.run import Run
from scaletrain.rundir import default_out
from scaletrain.tasks import TASKS, task_of
from scaletrain.train.budget import Budget

__all__ = ["fit", "load", "cross_validate", "tune", "pretrain", "scale", "audit", "config_from", "default_out"]


def config_from(config: str | Path | dict | Config | None = None, sets: list[str] | None = None,
                target: str | None = None, **overrides) -> Config:
    """Return the validated Config from a YAML file, dict or Config, `--set` items and keyword
    overrides such as `epochs=5`, `train__lr=0.01` or `model="mlp"`."""
    if isinstance(config, Config):
        config = config.to_dict()
    if overrides.get("time_limit") is not None:
        overrides["time_limit"] = parse_duration(overrides["time_limit"])
    cfg = make_config(config, sets, **overrides)
    if target is not None:
        cfg.data.target = target
    return cfg


def fit(data, target: str | None = None, *, y=None, test=None, out: str | Path | None = "auto",
        config: str | Path | dict | Config | None = None, sets: list[str] | None = None,
        verbose: bool = False, resume: bool = False, callbacks: list | None = None,
        report_sections: list[str] | None = None, overwrite: bool = False, resume_or_start: bool = False,
        started: float | None = None, **overrides) -> Run:
    """Train on raw data and return the Run; writes a run directory unless out=None.

    `data` is a path, glob, folder, DataFrame or array (with `y`); overrides are config keys
    such as `epochs=5`, `train__lr=0.01` or `model="mlp"`. With resume=True training
    continues from the newest valid checkpoint in `out` (refused where there is none, unless
    resume_or_start=True); an `out` that holds a run is refused unless resuming or overwrite=True.
    `callbacks` join the training loop's (a tuner's pruning); `report_sections` are HTML
    sections appended to report.html. A time limit bounds the whole call: it counts from here,
    or from `started` (a time.perf_counter reading: the command line's process start).
    """
    budget = Budget(None) if started is None else Budget(None, started)
    cfg = config_from(config, sets, target, **overrides)
    regime = task_of(cfg.data.task).regime if cfg.data.task in TASKS else None
    if regime is not None:  # a task that does not train on rows and a target (recommend)
        out = default_out(Path(str(data)).stem or "data") if out == "auto" else out
        return import_module(regime).train(cfg, data, out, verbose=verbose, overwrite=overwrite, resume=resume,
                                           resume_or_start=resume_or_start)
    budget.limit = cfg.train.time_limit
    # the pipeline (scikit-learn, the report's matplotlib) is imported to fit, not to load a run
    from scaletrain.fitting.pipeline import FitOptions, fit_run

    return fit_run(cfg, data, y=y, test=test, budget=budget,
                   options=FitOptions(out, verbose, resume or resume_or_start, callbacks, report_sections, overwrite,
                                      resume_or_start))


def load(path: str | Path) -> Run:
    """Return the Run stored in a run directory (a RecommenderRun for a recommender's)."""
    from scaletrain.recommend.store import is_recommender

    if is_recommender(path):
        from scaletrain.recommend.run import RecommenderRun

        return RecommenderRun.load(path)
    return Run.load(path)


def cross_validate(data, target: str | None = None, *, k: int = 5, config=None, sets: list[str] | None = None,
                   verbose: bool = False, on_fold=None, **overrides) -> dict:
    """Fit k times on a table, each time holding one fold out as the test set; return
    {"k", "task", "folds": [test metrics per fold], "mean": {...}, "std": {...}}. Overrides
    (epochs, time_limit, ...) apply to every fold's fit."""
    from scaletrain.fitting.cv import cross_validate_config

    return cross_validate_config(data, config_from(config, sets, target, **overrides), k=k, verbose=verbose,
                                 on_fold=on_fold)


def tune(data, target: str | None = None, *, config=None, sets: list[str] | None = None, **options):
    """Search hyperparameters and retrain the best (see scaletrain.tune.search.tune)."""
    from scaletrain.tune.search import tune as search

    return search(data, target, config=config_from(config, sets), **options)


def scale(data, target: str | None = None, *, config=None, sets: list[str] | None = None, **options) -> dict:
    """A scaling study of model size × data size (see scaletrain.scale.scale); returns scale.json's content."""
    from scaletrain.scale import scale as study

    if options.get("time_limit") is not None:
        options["time_limit"] = parse_duration(options["time_limit"])
    return study(data, target, config=config_from(config, sets), **options)


def audit(data, target: str | None = None, *, out: str | Path = "audit", folds: int = 5, config=None,
          sets: list[str] | None = None, test=None) -> list[dict]:
    """The data audit (duplicates and leakage across splits — `test`, a separate test file, is
    one of them — label errors, leaked columns); the findings."""
    from scaletrain.audit_data import audit_data

    return audit_data(data, target, config_from(config, sets), out, folds, test)


def pretrain(corpus, out: str | Path, *, config=None, sets: list[str] | None = None, verbose: bool = False,
             resume: bool = False, overwrite: bool = False, resume_or_start: bool = False, **overrides) -> dict:
    """Masked-LM pretraining of a Transformer encoder on unlabeled text (files, folders, globs;
    .txt, JSONL, compressed); writes the run directory `out` (with `hf/` for Hugging Face) and
    returns its metrics. With resume=True it continues from the newest checkpoint in `out`."""
    from scaletrain.pretraining.run import pretrain as run_pretraining

    return run_pretraining(_sources(corpus), out, config_from(config, sets, **overrides), verbose=verbose, resume=resume,
                           overwrite=overwrite, resume_or_start=resume_or_start)


def pretrain_blocks(corpus, out: str | Path, cfg, verbose: bool = False) -> Path:
    """Tokenize the corpus into OUT/blocks (unless it is shards already) for a pretraining run."""
    from scaletrain.pretraining.run import PretrainRecipe, blocks_folder

    cfg.data.block_size = cfg.data.block_size or PretrainRecipe.block_size
    return blocks_folder(_sources(corpus), cfg, Path(out), verbose)


def _sources(corpus) -> list:
    return [corpus] if isinstance(corpus, (str, Path)) else list(corpus)
