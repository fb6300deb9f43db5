"""The verbs that fit: train, prepare, pretrain, tune."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from scaletrain.cli import options
from scaletrain.cli.options import DEBUG, app, err_console, guarded, metrics_table, out_console


@app.command()
@guarded
def train(
    data: str = typer.Argument(..., help="CSV/TSV/Parquet/JSONL file or glob (a column of lists: sequences), "
                                         "image or sound-clip folder, IDX folder or .npz."),
    test: Optional[str] = typer.Option(None, help="Separate test data (else a split of DATA)."),
    target: Optional[str] = typer.Option(None, help="Target column (tables)."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/<data>-<time>)."),
    config: Optional[Path] = typer.Option(None, help="YAML config with data/model/train/checkpoint sections."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: section.key=value (repeatable)."),
    time_limit: Optional[str] = typer.Option(None, help="Time budget of the whole command (from its start), e.g. 10m."),
    seed: Optional[int] = typer.Option(None, help="Random seed (splits, init, shuffling)."),
    task: Optional[str] = typer.Option(None, help="binary, multiclass, regression, classification, or recommend "
                                                  "(DATA is a users × items interactions table; default: inferred)."),
    user: Optional[str] = typer.Option(None, help="recommend: the user column (default: found by its name)."),
    item: Optional[str] = typer.Option(None, help="recommend: the item column (default: found by its name)."),
    rating: Optional[str] = typer.Option(None, help="recommend: a rating or weight column (optional)."),
    time: Optional[str] = typer.Option(None, help="recommend: a time column: the split holds out each user's last item."),
    items: Optional[str] = options.ITEMS_TABLE,
    users: Optional[str] = options.USERS_TABLE,
    resume: bool = options.RESUME,
    resume_or_start: bool = options.RESUME_OR_START,
    overwrite: bool = options.OVERWRITE,
    cv: Optional[int] = typer.Option(None, help="K-fold cross-validation of this config on a table: prints each "
                                                 "metric as mean ± std over K fits (writes OUT/cv.json with --out)."),
    nproc_per_node: Optional[int] = options.NPROC_PER_NODE,
    nnodes: int = options.NNODES,
    node_rank: Optional[int] = options.NODE_RANK,
    rdzv_endpoint: Optional[str] = options.RDZV_ENDPOINT,
    max_restarts: int = options.MAX_RESTARTS,
    backend: str = options.TRAIN_BACKEND,
    quiet: bool = typer.Option(False, help="No progress bar."),
    debug: bool = DEBUG,
):
    """Train a model on DATA and write a run directory."""
    _refuse_a_missing_path(data)
    from scaletrain.api import default_out, fit
    from scaletrain.parallel import distributed
    from scaletrain.parallel.launch import Launch, launch_train
    from scaletrain.runlock import writing
    from scaletrain.runtime import process_started

    named = {"task": task, "user": user, "item": item, "rating": rating, "time": time, "items": items, "users": users}
    set_ = list(set_) + [f"data.{key}={value}" for key, value in named.items() if value is not None]
    if cv is not None:
        return _cross_validate(data, target, cv, out, config, set_, seed, time_limit, quiet)
    launch = Launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, max_restarts, backend, config, list(set_),
                    time_limit, seed, resume or resume_or_start, quiet)
    if launch.launches:
        # named here, once: every worker (and every restart of one) writes and resumes it; this process holds its lock
        out = out or default_out(Path(data).stem or "data")
        with writing(launch.writer_out(out), resume or resume_or_start, overwrite, resume_or_start):
            launch_train(launch, data, test, target, out)
        if (out / "metrics.json").exists():  # the node whose rank 0 wrote the run
            _summary(json.loads((out / "metrics.json").read_text()), out)
        return
    run = fit(data, target, test=test, out=out or "auto", config=config, sets=set_, verbose=not quiet,
              resume=resume, resume_or_start=resume_or_start, overwrite=overwrite, seed=seed, time_limit=time_limit,
              started=process_started())  # --time-limit bounds the command, its start and imports included
    # under torchrun only rank 0 reports, and not at all when `train --nproc-per-node` launched it
    if int(os.environ.get("RANK", "0")) == 0 and distributed.LAUNCHED_HERE not in os.environ:
        _summary(run.metrics, run.path)


def _refuse_a_missing_path(data: str) -> None:
    """A local DATA that is not there, refused before torch and scikit-learn load: a typo
    answered at once, not after ~3 s of imports. Globs and URLs are left to the readers."""
    from scaletrain.errors import path_not_found

    if "://" not in data and not any(ch in data for ch in "*?[") and not Path(data).exists():
        raise path_not_found(data)


def _summary(m: dict, path: Path) -> None:
    for note in m["notes"]:
        err_console.print(f"note: {note}", highlight=False)
    ranks = f" · {m['distributed']['ranks']} ranks" if m.get("distributed") else ""
    epochs = f" · {m['epochs']} epochs (best {m['best_epoch']})" if "epochs" in m else ""
    out_console.print(f"{m['task']} · {m['model']} ({m['parameters']:,} parameters){epochs} · "
                      f"{m['train_seconds']:.1f}s training{ranks}", highlight=False)
    out_console.print(metrics_table(m, ""))
    for name, figures in m.get("baselines", {}).items():
        out_console.print(f"test {m['headline']} of {name}: {figures[m['headline']]:.4f}", highlight=False)
    out_console.print(f"run directory: {path}\nreport: {path / 'report.html'}", highlight=False)


def _cross_validate(data, target, k, out, config, sets, seed, time_limit, quiet) -> None:
    from scaletrain.api import cross_validate
    from scaletrain.rundir import RunDir

    result = cross_validate(data, target, k=k, config=config, sets=sets, verbose=not quiet, seed=seed,
                            time_limit=time_limit)
    table = Table(title=f"{k}-fold cross-validation ({result['task']}), test fold metrics")
    for column in ("metric", "mean", "std"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, mean in result["mean"].items():
        table.add_row(name, f"{mean:.4f}", f"{result['std'][name]:.4f}")
    out_console.print(table)
    if out is not None:
        out_console.print(f"folds: {RunDir(out).write_cv(result)}", highlight=False)


def parse_size(text: str) -> int:
    """Return bytes from '256MB', '1GB', '500k' or a plain number."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        from scaletrain.errors import ConfigError

        raise ConfigError(f"size '{text}' is not a size; write e.g. 256MB or 1GB")
    return int(float(match.group(1)) * 1024 ** "bkmgt".index(match.group(2) or "b"))


@app.command()
@guarded
def prepare(
    sources: List[str] = typer.Argument(..., help="Table files, folders or globs, or one image folder with a "
                                              "subfolder per class (local paths or fsspec URLs such as s3://)."),
    out: str = typer.Option(..., help="Shard directory to create (local path or fsspec URL)."),
    target: Optional[str] = typer.Option(None, help="Target column."),
    shard_size: str = typer.Option("256MB", help="Approximate size of one shard in memory."),
    config: Optional[Path] = typer.Option(None, help="YAML config (data.task, data.columns, split fractions)."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: section.key=value (repeatable)."),
    seed: int = typer.Option(0, help="Seed of the train/val/test split."),
    corpus: bool = typer.Option(False, help="SOURCES are unlabeled text for `pretrain`: tokenize them in parallel "
                                            "processes into blocks of data.block_size tokens."),
    backend: str = typer.Option("local", help="local (processes on this machine) or ray (tasks on a running Ray "
                                              "cluster, RAY_ADDRESS; every worker must see SOURCES and --out)."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    debug: bool = DEBUG,
):
    """Convert tables or an image folder once into Parquet shards with a manifest and statistics, for streaming
    (or, with --corpus, a text corpus into tokenized blocks for pretraining)."""
    from scaletrain.config import make_config  # not through the API: prepare runs without torch
    from scaletrain.modalities import prepare_shards

    if backend not in ("local", "ray"):
        raise typer.BadParameter(f"--backend {backend!r}: choose local or ray")
    if corpus:
        return _prepare_corpus(sources, out, make_config(config, set_), quiet, backend)
    d = make_config(config, set_).data
    manifest = prepare_shards(sources, out, target=target or d.target, task=d.task, roles=d.columns,
                              shard_size=parse_size(shard_size), val_fraction=d.val_fraction,
                              test_fraction=d.test_fraction, seed=seed, image_size=d.image_size,
                              channels=d.channels, verbose=not quiet, backend=backend)
    rows = manifest["rows"]
    out_console.print(f"{len(manifest['sources'])} file(s) → {len(manifest['shards'])} shard(s) in {out}: "
                      f"{rows['train']:,} train, {rows['val']:,} val, {rows['test']:,} test rows "
                      f"in {manifest['seconds']:.1f}s", highlight=False)
    _say_what_was_read(manifest)


def _say_what_was_read(manifest: dict) -> None:
    """A table's columns left out of the shards, and its image and sound columns' cells that held none."""
    for column, why in manifest.get("roles", {}).get("dropped", {}).items():
        out_console.print(f"column '{column}' left out: {why}", highlight=False)
    sounds = set(manifest.get("roles", {}).get("sound", []))
    for column, count in manifest.get("stats", {}).get("media_absent", {}).items():
        what = "sound clip" if column in sounds else "image"
        out_console.print(f"{what.split()[0]} column '{column}': each cell's file carried into the shards; {count:,} "
                          f"training cell(s) held no {what} (empty, not found or not one): read as missing",
                          highlight=False)


def _prepare_corpus(sources: list[str], out: str, cfg, quiet: bool, backend: str) -> None:
    import time

    from scaletrain.pretraining.run import PretrainRecipe, corpus_tokenizer
    from scaletrain.pretraining.shards import prepare_corpus

    started = time.perf_counter()
    block = cfg.data.block_size or PretrainRecipe.block_size
    m = prepare_corpus(sources, out, corpus_tokenizer(sources, cfg), block, cfg.data.document, cfg.data.text_field,
                       cfg.data.loader_workers, verbose=not quiet, backend=backend)
    out_console.print(f"{m['documents']:,} documents → {m['blocks']:,} blocks of {block} tokens ({m['tokens']:,} tokens, "
                      f"{len(m['shards'])} shards) in {out} in {time.perf_counter() - started:.1f}s; "
                      f"pretrain with `scaletrain pretrain {out} --out DIR`", highlight=False)


@app.command()
@guarded
def pretrain(
    corpus: List[str] = typer.Argument(..., help="Text files, folders or globs: .txt (a document per line, or per "
                                                 "file with --set data.document=file), JSONL; .gz/.bz2/.xz too."),
    out: Path = typer.Option(..., help="Run directory (the encoder, tokenizer.json, report, hf/)."),
    config: Optional[Path] = typer.Option(None, help="YAML config with data/model/train/checkpoint sections."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: section.key=value (repeatable)."),
    time_limit: Optional[str] = typer.Option(None, help="Time budget, e.g. 90s, 10m, 1h."),
    seed: Optional[int] = typer.Option(None, help="Random seed (masks, order, init)."),
    resume: bool = options.RESUME,
    resume_or_start: bool = options.RESUME_OR_START,
    overwrite: bool = options.OVERWRITE,
    nproc_per_node: Optional[int] = options.NPROC_PER_NODE,
    nnodes: int = options.NNODES,
    node_rank: Optional[int] = options.NODE_RANK,
    rdzv_endpoint: Optional[str] = options.RDZV_ENDPOINT,
    max_restarts: int = options.MAX_RESTARTS,
    backend: str = options.TRAIN_BACKEND,
    quiet: bool = typer.Option(False, help="No progress bar."),
    debug: bool = DEBUG,
):
    """Pretrain a Transformer encoder on unlabeled text (BERT's masked language modelling)."""
    from scaletrain.api import pretrain as run_pretraining
    from scaletrain.parallel import distributed
    from scaletrain.parallel.launch import Launch, launch_pretrain
    from scaletrain.runlock import writing

    launch = Launch(nproc_per_node, nnodes, node_rank, rdzv_endpoint, max_restarts, backend, config, list(set_),
                    time_limit, seed, resume or resume_or_start, quiet)
    if launch.launches:
        with writing(launch.writer_out(out), resume or resume_or_start, overwrite, resume_or_start):  # for the workers
            launch_pretrain(launch, corpus, out)
        if not (out / "metrics.json").exists():  # another node's rank 0 wrote the run
            return
        m = json.loads((out / "metrics.json").read_text())
    else:
        m = run_pretraining(corpus, out, config=config, sets=set_, verbose=not quiet, resume=resume, seed=seed,
                            time_limit=time_limit, overwrite=overwrite, resume_or_start=resume_or_start)
        if distributed.LAUNCHED_HERE in os.environ or int(os.environ.get("RANK", "0")) != 0:
            return  # a worker: the launching process reports
    v = m["validation"]
    ranks = f", {m['distributed']['ranks']} ranks" if m.get("distributed") else ""
    out_console.print(f"masked-LM validation loss {v['val_loss']:.4f}, perplexity {v['val_perplexity']:.2f}, "
                      f"masked-token accuracy {v['val_score']:.4f} after {m['steps']:,} steps "
                      f"({m['tokens_per_second']:,.0f} tokens/s{ranks})")
    for note in m["notes"]:
        out_console.print(f"note: {note}", highlight=False)
    out_console.print(f"run directory: {out} (Hugging Face: {out / 'hf'})" if m.get("hf") else f"run directory: {out}")


@app.command()
@guarded
def tune(
    data: str = typer.Argument(..., help="Table file or image data, as for train."),
    target: Optional[str] = typer.Option(None, help="Target column (tables)."),
    search: str = typer.Option("bayes", help="grid, random or bayes (Optuna's TPE)."),
    trials: Optional[int] = typer.Option(None, help="Trials to run (default: the whole grid; 20 for random/bayes "
                                                     "without --time-limit)."),
    time_limit: Optional[str] = typer.Option(None, help="Budget for the whole search and the retrain, e.g. 10m."),
    cv: Optional[int] = typer.Option(None, help="Score each trial by K-fold cross-validation (tables)."),
    space: Optional[Path] = typer.Option(None, help="YAML search space: config key -> list or {low, high, log}."),
    out: Optional[Path] = typer.Option(None, help="Directory for leaderboard.csv, tune.json and best/ "
                                                  "(default runs/tune-<data>-<time>)."),
    config: Optional[Path] = typer.Option(None, help="YAML config every trial starts from."),
    set_: List[str] = typer.Option([], "--set", help="Fix a config key for every trial: section.key=value."),
    workers: Optional[int] = typer.Option(None, help="Trials run at once in separate processes "
                                                     "(default: one per core for tables, 1 for images)."),
    backend: str = typer.Option("optuna", help="optuna (local processes) or ray (Ray Tune on a running cluster)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the split, the sampler and every trial."),
    prune: bool = typer.Option(True, help="Stop trials whose intermediate validation scores trail the median."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    debug: bool = DEBUG,
):
    """Search hyperparameters, write a leaderboard and retrain the best configuration into OUT/best."""
    from scaletrain.api import default_out
    from scaletrain.api import tune as run_search

    out = out or default_out(f"tune-{Path(data).stem or 'data'}")
    result = run_search(data, target, search=search, trials=trials, time_limit=time_limit, cv=cv, space=space,
                        out=out, config=config, sets=set_, workers=workers, seed=seed, prune=prune,
                        verbose=not quiet, backend=backend)
    from scaletrain.tune.search import params_of

    board = result.leaderboard
    table = Table(title=f"{search} search: {int((board['trial'] != 'default').sum())} trials "
                        f"in {result.seconds:.0f}s (validation {board.attrs.get('score', 'score')})")
    for column in ("rank", "trial", "state", "score", "seconds", "values"):
        table.add_column(column, justify="left" if column in ("trial", "state", "values") else "right")
    for i, row in enumerate(board.head(10).itertuples()):
        values = " ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                          for k, v in params_of(board, i).items()) or "zero-config"
        table.add_row(str(row.rank), row.trial, row.state, f"{row.score:.4f}", f"{row.seconds:.1f}", values)
    out_console.print(table)
    out_console.print(metrics_table(result.run.metrics, "best configuration, retrained"))
    out_console.print(f"leaderboard: {out / 'leaderboard.csv'}\nbest run: {result.path}\n"
                      f"report: {result.path / 'report.html'}", highlight=False)
