"""A scaling study of an unlabelled text corpus: each cell a masked-LM pretraining run
(`scaletrain pretrain`'s recipe) of an encoder width on a share of the corpus's blocks, its
loss the masked-LM loss on the same held-out blocks; D counts the tokens it trained on.

The corpus is tokenized once (the study's OUT/blocks, or a folder `scaletrain prepare
--corpus` wrote); every cell reads those shards, so all share one tokenizer and one validation
set. Each cell trains one epoch over its share: D is then the tokens it saw, none repeated.
"""
from __future__ import annotations

import time
from pathlib import Path

from scaletrain.config import Config, build_config
from scaletrain.errors import ConfigError, DataError

CORPUS_WIDTHS = (32, 64, 128)
CORPUS_DEPTH = 2  # layers of every cell's encoder: the study varies the width


def is_corpus(data, target: str | None) -> bool:
    """Unlabelled text files (or their prepared shards): what `pretrain` reads."""
    from scaletrain.data.corpus import corpus_files
    from scaletrain.pretraining.shards import is_corpus_shards

    if target is not None or not isinstance(data, (str, Path)):
        return False
    if is_corpus_shards(data):
        return True
    try:
        return bool(corpus_files([data]))
    except DataError:
        return False


def prepare_blocks(data, config: Config, out: Path) -> Path:
    """The corpus's shards of packed blocks, written once for every cell."""
    from scaletrain.pretraining.run import PretrainRecipe, blocks_folder

    cfg = config.thawed()
    cfg.data.block_size = cfg.data.block_size or PretrainRecipe.block_size
    return blocks_folder([str(data)], cfg, out, verbose=False)


def corpus_config(plan_config: dict, width: int, fraction: float, seed: int, threads: int, limit) -> Config:
    return build_config(plan_config).with_values({
        "model.width": width, "model.depth": plan_config["model"]["depth"] or CORPUS_DEPTH, "train.epochs": 1,
        "data.pretrain_fraction": fraction, "train.seed": seed, "train.threads": threads, "train.time_limit": limit})


def run_pretrain_cell(plan, width: int, fraction: float, seed: int, limit) -> dict:
    """One cell: pretrain on the share of the blocks, its held-out masked-LM loss."""
    from scaletrain.pretraining.run import pretrain

    cfg = corpus_config(plan.config, width, fraction, seed, plan.threads, limit)
    started = time.time()
    out = Path(plan.cells_dir) / f"pretrain-{width}-{fraction:.6g}-{seed}"
    metrics = pretrain([plan.data], out, cfg, verbose=False)
    if not metrics["tokens_seen"]:
        raise ConfigError(f"the scaling cell of width {width} on {fraction:g} of the corpus trained no step in its "
                          f"{limit:.1f}s; give a longer --time-limit or larger fractions")
    return {"width": width, "fraction": fraction, "seed": seed, "rows": int(metrics["tokens_seen"]),
            "parameters": int(metrics["parameters"]), "loss": float(metrics["validation"]["val_loss"]),
            "seconds": round(time.time() - started, 3), "epochs": metrics["epochs"], "limit": limit,
            "started": started, "ended": time.time()}


def measure_corpus_widths(plan, widths: list[int]) -> tuple[dict[int, int], dict[int, float]]:
    """Each width's parameter count, and its measured training seconds per block (a few steps of
    one batch with the cells' threads): what a cell's time share is sized by."""
    import numpy as np
    import torch

    from scaletrain.models.transformer import MaskedLM
    from scaletrain.pretraining.run import PretrainRecipe, mlm_loss, shape_of
    from scaletrain.pretraining.shards import ShardedBlocks, read_manifest

    manifest = read_manifest(plan.data)
    batches = ShardedBlocks(plan.data, PretrainRecipe.batch_size, 0.15, 0, 1)
    inputs, targets = next(iter(batches.epoch(0)))
    counts, seconds = {}, {"reading": 0.0}
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        for width in widths:
            cfg = corpus_config(plan.config, width, 1.0, 0, plan.threads, None)
            PretrainRecipe().resolve(cfg, manifest["blocks"])
            model = MaskedLM(shape_of(cfg, manifest["vocab_size"])).train()
            counts[width] = sum(p.numel() for p in model.parameters())
            if width not in plan.widths:
                continue
            optimizer = torch.optim.SGD(model.parameters(), 1e-3)
            times = []
            for _ in range(3):  # the first is warm-up
                began = time.perf_counter()
                optimizer.zero_grad()
                mlm_loss(model(*inputs), targets).backward()
                optimizer.step()
                times.append(time.perf_counter() - began)
            seconds[width] = float(np.median(times[1:])) / len(inputs[0])
    finally:
        torch.set_num_threads(threads)
    return counts, seconds


def plan_corpus_study(data, config: Config, widths: list[int] | None, fractions: list[float] | None, seeds: int,
                      workers: int, out: Path):
    """The plan of a corpus study: the blocks written once, encoder widths × shares of the blocks."""
    from scaletrain.pretraining.run import VAL_MAX_BLOCKS, VAL_SHARE
    from scaletrain.pretraining.shards import read_manifest
    from scaletrain.runtime import cores
    from scaletrain.scale.plan import FRACTIONS, StudyPlan, checked_grid

    folder = prepare_blocks(data, config, out)
    manifest = read_manifest(folder)
    held = int(min(VAL_MAX_BLOCKS, max(1, round(VAL_SHARE * manifest["blocks"])), manifest["shards"][0]["blocks"] - 1))
    widths, fractions = checked_grid(widths or CORPUS_WIDTHS, fractions or FRACTIONS)
    config = config.with_values({"data.block_size": manifest["block_size"]})  # the blocks' own length
    return StudyPlan(str(folder), None, config.to_dict(), "transformer", widths, fractions, list(range(seeds)), held,
                     (manifest["blocks"] - held) * manifest["block_size"], max(1, cores() // workers), kind="pretrain")
