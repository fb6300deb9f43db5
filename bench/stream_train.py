"""One training process for bench/big_table.py: STEPS steps on a shard directory, streamed or
with the same rows held in memory; prints samples/s and peak RSS as JSON.

`python bench/stream_train.py SHARDS stream|memory STEPS`
"""
from __future__ import annotations

import json
import resource
import sys
import time

import torch


class StepTimer:
    """Stops after `steps`; times from step 20 on, so worker start-up is not counted."""

    def __init__(self, steps: int, batch_size: int):
        self.steps, self.batch_size, self.started = steps, batch_size, None

    def on_train_begin(self, state): ...
    def on_epoch_end(self, state): ...
    def on_train_end(self, state): ...

    def on_step_end(self, state, loss):
        if state.step == 20:
            self.started = time.perf_counter()
        if state.step >= self.steps:
            self.seconds = time.perf_counter() - self.started
            state.stop = True


def main() -> None:
    from scaletrain.config import make_config
    from scaletrain.data.batches import TensorBatches
    from scaletrain.data.manifest import read_manifest
    from scaletrain.data.preprocess import encode_target
    from scaletrain.data.stream import read_units, units_of
    from scaletrain.fitting.recipe import resolve
    from scaletrain.modalities import load_source, modality, prepare
    from scaletrain.modalities.table.preprocess import transform_table
    from scaletrain.models.registry import build_model
    from scaletrain.train.loop import LoopSettings, train_loop
    from scaletrain.train.losses import build_loss
    from scaletrain.train.optim import build_optimizer
    from scaletrain.train.setup import model_spec, training_batches

    shards, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = make_config(sets=sys.argv[4:])
    prepared = prepare(load_source(shards), None, cfg.data, 0)
    cfg = resolve(cfg, modality(prepared.kind).facts(prepared))
    torch.set_num_threads(cfg.train.threads)
    t = cfg.train
    rows = (steps + 1) * t.batch_size
    if mode == "memory":  # the same first rows the stream would read, held as tensors
        manifest = read_manifest(shards)
        chosen, total = [], 0
        for unit in units_of(manifest, "train"):
            chosen.append(unit)
            total += unit.rows
            if total >= rows:
                break
        frame = read_units(manifest.root, shards, chosen)
        state = prepared.preprocess
        batches = TensorBatches(transform_table(state, frame).tensors(),
                                encode_target(state["target"], frame[state["target_column"]]), t.batch_size,
                                shuffle=True, seed=0)
        rows = len(frame)
    else:
        batches = training_batches(cfg, prepared)
        rows = batches.rows
    model = build_model(model_spec(cfg, prepared), cfg.model)
    timer = StepTimer(steps, t.batch_size)
    settings = LoopSettings(epochs=1, lr=t.lr, schedule="constant")
    train_loop(model, batches, build_loss(t.loss, prepared.task, 0.0, None),
               build_optimizer(model, t.optimizer, t.lr, t.momentum, t.weight_decay), settings,
               lambda m: {}, [timer])
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"samples_per_s": (steps - 20) * t.batch_size / timer.seconds, "rss": usage,
                      "children_rss": children, "rows": rows, "batch_size": t.batch_size,
                      "workers": cfg.data.loader_workers}))


if __name__ == "__main__":
    main()
