"""`scaletrain pretrain CORPUS --out DIR`: masked-LM pretraining of a Transformer encoder.

A WordPiece tokenizer is trained on the corpus (data/corpus.py reads it), the documents are
tokenized once, in parallel processes, into shards of packed blocks (shards.py; DIR/blocks,
or a folder `scaletrain prepare --corpus` wrote) and streamed with flat memory into the same
loop, checkpoints, time limit and progress bar as `train`, BERT's masking drawn anew each
epoch. DIR holds the model, tokenizer, metrics (masked-LM loss, perplexity, masked-token
accuracy), history, report and `hf/` for Hugging Face transformers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from scaletrain.config import Config
from scaletrain.data.corpus import Corpus, corpus_files
from scaletrain.data.preprocess import given_tokenizer
from scaletrain.data.text import pretraining_vocab_size, train_tokenizer
from scaletrain.errors import ConfigError, DataError
from scaletrain.models.transformer import EncoderShape, MaskedLM
from scaletrain.parallel import distributed
from scaletrain.pretraining.blocks import MaskedBlocks, segments_of
from scaletrain.pretraining.report import write_outputs
from scaletrain.pretraining.shards import ShardedBlocks, is_corpus_shards, prepare_corpus, read_manifest
from scaletrain.rundir import RunDir
from scaletrain.runlock import writing
from scaletrain.runtime import cores
from scaletrain.train import assembly, device
from scaletrain.train.assembly import Checkpointing, LoopPlan, process_group
from scaletrain.train.budget import Budget
from scaletrain.train.callbacks import History, ReleaseMemory
from scaletrain.train.loop import train_loop
from scaletrain.train.optim import build_optimizer

TOKENIZER_SAMPLE_CHARS = 50_000_000  # the tokenizer learns from the corpus's first 50 MB of text
VAL_SHARE, VAL_MAX_BLOCKS = 0.05, 512


@dataclass
class PretrainRecipe:
    """BERT-mini's shape (4 layers, width 256) and a small-BERT recipe: AdamW, lr 5e-4, 6%
    warmup then cosine decay, weight decay 0.01, 128-token blocks, batches of 32 blocks."""

    block_size: int = 128
    depth: int = 4
    width: int = 256
    batch_size: int = 32
    lr: float = 5e-4
    warmup: float = 0.06
    weight_decay: float = 0.01
    max_steps: int = 20_000

    def resolve(self, cfg: Config, n_blocks: int) -> None:
        d, m, t = cfg.data, cfg.model, cfg.train
        m.name = "transformer"
        m.depth = m.depth or self.depth
        m.width = m.width or self.width
        m.heads = m.heads or max(1, m.width // 64)
        m.ff = m.ff or 4 * m.width
        m.dropout = 0.1 if m.dropout is None else m.dropout
        m.max_positions = m.max_positions or d.block_size
        t.optimizer = "adamw" if t.optimizer == "auto" else t.optimizer
        t.lr = t.lr or self.lr
        t.batch_size = t.batch_size or self.batch_size
        t.weight_decay = self.weight_decay if t.weight_decay is None else t.weight_decay
        t.schedule = "cosine" if t.schedule == "auto" else t.schedule
        t.warmup = t.warmup or self.warmup
        steps = max(1, -(-n_blocks // t.batch_size))
        t.epochs = t.epochs or int(max(1, min(40, self.max_steps // steps)))
        t.threads = t.threads or cores()
        t.device = device.resolve_device(t.device)


def shape_of(cfg: Config, vocab_size: int) -> EncoderShape:
    m = cfg.model
    return EncoderShape(vocab_size=vocab_size, max_positions=m.max_positions, layers=m.depth, width=m.width,
                        heads=m.heads, ff=m.ff, dropout=m.dropout, pre_norm=m.pre_norm)


def corpus_tokenizer(sources: list, cfg: Config) -> str:
    """The tokenizer data.tokenizer names (a tokenizer.json or a run directory), else a
    WordPiece tokenizer trained on the corpus's first 50 MB, sized from all of it
    (data.vocab_size, or text.pretraining_vocab_size)."""
    if cfg.data.tokenizer:
        return given_tokenizer(cfg.data.tokenizer).to_str()
    files = corpus_files(sources)
    corpus, sample, chars = Corpus(files, cfg.data.document, cfg.data.text_field), [], 0
    for doc in corpus:
        sample.append(doc)
        chars += len(doc)
        if chars >= TOKENIZER_SAMPLE_CHARS:
            break
    if not sample:
        raise DataError(f"the corpus ({', '.join(map(str, sources))}) holds no text; "
                        f"{'; '.join(corpus.notes()) or 'every document was empty'}")
    size = cfg.data.vocab_size or pretraining_vocab_size(sum(f.stat().st_size for f in files))
    return train_tokenizer(sample, size).to_str()


def blocks_folder(sources: list, cfg: Config, out: Path, verbose: bool) -> Path:
    """The corpus's shards: given (`scaletrain prepare --corpus`), else written once into
    DIR/blocks (a resume finds them there)."""
    if len(sources) == 1 and is_corpus_shards(sources[0]):
        return Path(sources[0])
    folder = out / "blocks"
    if not is_corpus_shards(folder):
        prepare_corpus(sources, folder, corpus_tokenizer(sources, cfg), cfg.data.block_size, cfg.data.document,
                       cfg.data.text_field, cfg.data.loader_workers or cores(), verbose=verbose)
    return folder


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets)


class MaskedValidation:
    """Masked-LM loss, perplexity and accuracy on the held-out blocks, under fixed masks."""

    def __init__(self, batches: MaskedBlocks, on: torch.device, precision: str):
        self.batches, self.on, self.precision = batches, on, precision

    @torch.no_grad()
    def __call__(self, model) -> dict:
        loss_sum, hits, count = 0.0, 0, 0
        for inputs, targets in self.batches.epoch(0):
            inputs, targets = device.to_device(inputs, self.on), targets.to(self.on)
            with device.autocast(self.precision, self.on.type):
                logits = model(*inputs).float()
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            hits += int((logits.argmax(dim=1) == targets).sum())
            count += len(targets)
        loss = loss_sum / max(count, 1)
        return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0)), "val_score": hits / max(count, 1)}


def pretrain(sources: list, out: str | Path, cfg: Config, verbose: bool = True, resume: bool = False,
             callbacks: list | None = None, overwrite: bool = False, resume_or_start: bool = False) -> dict:
    """Pretrain on the corpus and write the run directory; return its metrics. Under torchrun
    or Ray Train (several ranks) the ranks train data-parallel and rank 0 writes the run."""
    resume = resume or resume_or_start
    with writing(out, resume or distributed.restarted(), overwrite, resume_or_start), process_group(cfg.train.device):
        return _pretrain(sources, Path(out), cfg, verbose, resume or distributed.restarted(), callbacks or [])


def _pretrain(sources: list, out: Path, cfg: Config, verbose: bool, resume: bool, extra: list) -> dict:
    started, budget, w = time.perf_counter(), Budget(cfg.train.time_limit), distributed.world()
    cfg.data.block_size = cfg.data.block_size or PretrainRecipe.block_size
    if w.main:  # rank 0 tokenizes the corpus once; the others then read its shards
        folder = blocks_folder(sources, cfg, out, verbose)
    distributed.barrier()
    folder = blocks_folder(sources, cfg, out, verbose) if not w.main else folder
    manifest = read_manifest(folder)
    if manifest["block_size"] != cfg.data.block_size:
        raise ConfigError(f"'{folder}' holds blocks of {manifest['block_size']} tokens; set data.block_size="
                          f"{manifest['block_size']} or prepare the corpus again")
    held_out = int(min(VAL_MAX_BLOCKS, max(1, round(VAL_SHARE * manifest["blocks"])), manifest["shards"][0]["blocks"] - 1))
    threads_given = cfg.train.threads
    PretrainRecipe().resolve(cfg, int((manifest["blocks"] - held_out) * cfg.data.pretrain_fraction))
    t = cfg.train
    t.threads = t.threads if threads_given else max(1, t.threads // w.local_size)  # the machine's cores shared
    distributed.local_batch(t.batch_size)  # a clear error unless the global batch divides over the ranks
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    shape = shape_of(cfg, manifest["vocab_size"])
    model = device.place(MaskedLM(shape), t.device)
    run = RunDir(out)
    if w.main:
        run.write_tokenizer((folder / manifest["tokenizer"]).read_text(encoding="utf-8"))
    shards = ShardedBlocks(folder, t.batch_size, cfg.data.mask_rate, t.seed, held_out, w.rank, w.size,
                           cfg.data.pretrain_fraction)
    batches = device.OnDevice(shards, torch.device(t.device))
    if len(batches) == 0:
        raise DataError(f"the corpus holds fewer training blocks than one global batch ({t.batch_size}); "
                        "lower train.batch_size or give more text")
    val_ids = shards.validation_blocks()
    validate = MaskedValidation(MaskedBlocks(val_ids, segments_of(torch.from_numpy(val_ids)).numpy(), 16, shape.vocab_size,
                                             cfg.data.mask_rate, t.seed + 1, shuffle=False),
                                torch.device(t.device), t.precision)
    wrapped = distributed.wrap(model, t.device, fsdp=False)  # DDP: gradients averaged over the ranks
    optimizer = build_optimizer(model, t.optimizer, t.lr, t.momentum, t.weight_decay)
    history = History()
    plan = LoopPlan(budget, Checkpointing(out / "checkpoints", cfg.checkpoint, cfg.to_dict(), resume), extra,
                    "pretraining" if verbose else None)
    callbacks = assembly.callbacks(plan, [history, ReleaseMemory()], {"history": history})
    settings = assembly.loop_settings(t, budget, clip=t.clip or 1.0)
    trained = time.perf_counter()
    state = train_loop(model, batches, mlm_loss, optimizer, settings, validate, callbacks, wrapped)
    seconds, seen = time.perf_counter() - trained, state.step * t.batch_size * cfg.data.block_size
    metrics = {"task": "masked_lm", "documents": manifest["documents"], "tokens": manifest["tokens"],
               "blocks": {"train": sum(shards.counts), "validation": held_out},
               "tokens_seen": seen, "notes": [f"skipped or changed {n:,} {what}" for what, n in sorted(manifest["skipped"].items())],
               "block_size": cfg.data.block_size, "vocab_size": shape.vocab_size,
               "parameters": sum(p.numel() for p in model.parameters()), "steps": state.step,
               "epochs": len(history.rows), "validation": state.val or validate(model),
               "tokens_per_second": round(seen / max(seconds, 1e-9), 1),
               "seconds": round(time.perf_counter() - started, 2),
               **({"distributed": {"ranks": w.size}} if w.active else {})}
    if w.main:
        write_outputs(run, cfg, model, metrics, history.rows)
    return metrics
