"""`scaletrain pretrain CORPUS --out DIR`: masked-LM pretraining of a Transformer encoder.

The corpus is read once (data/corpus.py), a WordPiece tokenizer trained on it, the documents
packed into blocks (blocks.py) and the encoder trained by the same loop, checkpoints, time
limit and progress bar as `train`, with BERT's masking drawn anew each epoch. DIR holds the
model, tokenizer, metrics (masked-LM loss, perplexity, masked-token accuracy), history,
report and `hf/` for Hugging Face transformers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scaletrain.budget import Budget
from scaletrain.config import Config
from scaletrain.data.corpus import Corpus, corpus_files
from scaletrain.data.text import tokenizer_from_json, train_tokenizer, vocab_size_for
from scaletrain.errors import DataError
from scaletrain.models.transformer import EncoderShape, MaskedLM
from scaletrain.pretraining.blocks import MaskedBlocks, pack
from scaletrain.pretraining.report import write_outputs
from scaletrain.rundir import TOKENIZER, RunDir
from scaletrain.runtime import cores
from scaletrain.train import device
from scaletrain.train.callbacks import History, ProgressBar, TimeLimit
from scaletrain.train.checkpoint import Checkpoint
from scaletrain.train.loop import LoopSettings, train_loop
from scaletrain.train.optim import build_optimizer

TOKENIZER_SAMPLE_CHARS = 50_000_000  # the tokenizer learns from the corpus's first 50 MB of text
VAL_SHARE, VAL_MAX_BLOCKS = 0.05, 512
ENCODE_CHUNK = 2048  # documents per tokenizer call (it runs them in parallel threads)


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


def read_corpus(sources: list, cfg: Config, out: Path) -> tuple[object, np.ndarray, np.ndarray, list[str], int]:
    """The tokenizer (reused from DIR on a resume), the packed blocks, notes and documents read."""
    files = corpus_files(sources)
    corpus = Corpus(files, cfg.data.document, cfg.data.text_field)
    saved = out / TOKENIZER
    if saved.is_file():
        tokenizer = tokenizer_from_json(saved.read_text(encoding="utf-8"))
    else:
        sample, chars = [], 0
        for doc in corpus:
            sample.append(doc)
            chars += len(doc)
            if chars >= TOKENIZER_SAMPLE_CHARS:
                break
        if not sample:
            raise DataError(f"the corpus ({', '.join(map(str, sources))}) holds no text; "
                            f"{'; '.join(corpus.notes()) or 'every document was empty'}")
        size = vocab_size_for(sum(f.stat().st_size for f in files))  # bytes: about the characters
        tokenizer = train_tokenizer(sample, size)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    corpus.skipped.clear()
    count = [0]

    def documents():
        chunk = []
        for doc in corpus:
            chunk.append(doc)
            if len(chunk) == ENCODE_CHUNK:
                yield from _encoded(tokenizer, chunk, count)
                chunk = []
        yield from _encoded(tokenizer, chunk, count)

    ids, segments = pack(documents(), cfg.data.block_size)
    if len(ids) < 2:
        raise DataError(f"the corpus is too small to pretrain on: {len(ids)} block of {cfg.data.block_size} tokens; "
                        "give more text or a smaller data.block_size")
    return tokenizer, ids, segments, corpus.notes(), count[0]


def _encoded(tokenizer, chunk: list[str], count: list[int]):
    count[0] += len(chunk)
    for encoding in tokenizer.encode_batch(chunk, add_special_tokens=False):
        yield encoding.ids


def split_blocks(ids: np.ndarray, segments: np.ndarray, seed: int):
    """Held-out blocks (5%, at most 512) for the masked-LM validation metrics."""
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = int(min(VAL_MAX_BLOCKS, max(1, round(VAL_SHARE * len(ids)))))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (ids[train], segments[train]), (ids[val], segments[val])


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


def pretrain(sources: list, out: str | Path, cfg: Config, verbose: bool = True, resume: bool = False) -> dict:
    """Pretrain on the corpus and write the run directory; return its metrics."""
    started, out, budget = time.perf_counter(), Path(out), Budget(cfg.train.time_limit)
    cfg.data.block_size = cfg.data.block_size or PretrainRecipe.block_size
    tokenizer, ids, segments, notes, n_docs = read_corpus(sources, cfg, out)
    (train_ids, train_seg), (val_ids, val_seg) = split_blocks(ids, segments, cfg.train.seed)
    PretrainRecipe().resolve(cfg, len(train_ids))
    t = cfg.train
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    shape = shape_of(cfg, tokenizer.get_vocab_size())
    model = device.place(MaskedLM(shape), t.device)
    run = RunDir(out)
    out.mkdir(parents=True, exist_ok=True)
    run.write_tokenizer(tokenizer.to_str())
    vocab = shape.vocab_size
    batches = MaskedBlocks(train_ids, train_seg, t.batch_size, vocab, cfg.data.mask_rate, t.seed)
    validate = MaskedValidation(MaskedBlocks(val_ids, val_seg, 64, vocab, cfg.data.mask_rate, t.seed + 1,
                                             shuffle=False), torch.device(t.device), t.precision)
    optimizer = build_optimizer(model, t.optimizer, t.lr, t.momentum, t.weight_decay)
    history = History()
    callbacks = [history, Checkpoint(out / "checkpoints", cfg.checkpoint.every_steps, cfg.checkpoint.every_minutes,
                                     cfg.checkpoint.keep, config=cfg.to_dict(), stateful={"history": history},
                                     resume=resume)]
    if budget.limited:
        callbacks.append(TimeLimit(budget.training_limit(), budget=budget.limit))
    callbacks += [ProgressBar("pretraining")] if verbose else []
    settings = LoopSettings(epochs=t.epochs, lr=t.lr, schedule=t.schedule, warmup=t.warmup, clip=t.clip or 1.0,
                            grad_accum=t.grad_accum, precision=t.precision, time_limit=budget.training_limit(),
                            time_spent=budget.spent_before, device=torch.device(t.device).type,
                            on_nan=t.on_nan, compile=t.compile == "on")
    trained = time.perf_counter()
    state = train_loop(model, batches, mlm_loss, optimizer, settings, validate, callbacks)
    seconds = time.perf_counter() - trained
    final = state.val or validate(model)
    metrics = {"task": "masked_lm", "documents": n_docs, "blocks": {"train": len(train_ids), "validation": len(val_ids)},
               "block_size": cfg.data.block_size, "vocab_size": vocab, "parameters": sum(p.numel() for p in model.parameters()),
               "steps": state.step, "epochs": len(history.rows), "validation": final,
               "tokens_per_second": round(state.step * t.batch_size * cfg.data.block_size / max(seconds, 1e-9), 1),
               "seconds": round(time.perf_counter() - started, 2), "notes": notes}
    write_outputs(run, cfg, model, metrics, history.rows)
    return metrics
