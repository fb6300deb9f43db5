"""What one training run is built from: the seeded model placed on its device, the batches
(tensors in memory or a shard stream), and the loss with its class weights. The trainer, the
range test and the budget probe all build them here."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import torch

from scaletrain.config import Config, TrainConfig
from scaletrain.data.batches import TensorBatches
from scaletrain.data.prepared import Prepared
from scaletrain.errors import ConfigError
from scaletrain.modalities import modality
from scaletrain.models.registry import ModelSpec, build_model, fit_to_rows
from scaletrain.parallel import distributed
from scaletrain.tasks.regression import level_values
from scaletrain.train import device
from scaletrain.train.losses import output_size, training_loss
from scaletrain.train.transfer import start_columns, start_from


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    # not torch.manual_seed: it queues a lazy seed for CUDA, XPU and MTIA, formatting the caller's
    # stack for each (~4 ms deep in a search, which seeds every model it builds: thousands)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def model_spec(cfg: Config, prepared: Prepared) -> ModelSpec:
    """What the model builders need to know of the data and the task's outputs."""
    n_out = output_size(prepared.task, cfg.train.loss, prepared.n_classes or prepared.n_levels)
    spec = modality(prepared.kind).model_spec(prepared, n_out)
    pairs = any(m.text_pairs for m in [cfg.model, *(cfg.model.members or [])])
    return spec if pairs else replace(spec, pair_buckets=0)  # a size the weights do not hold is refused on load


def placed_model(cfg: Config, prepared: Prepared) -> tuple[torch.nn.Module, ModelSpec]:
    """The model the config names, seeded, on its device and memory layout; and its spec."""
    seed_everything(cfg.train.seed)
    spec = model_spec(cfg, prepared)
    channels_last = modality(prepared.kind).channels_last(cfg.train)
    model = build_model(spec, cfg.model)
    fit_to_rows(model, prepared.rows_in_memory())
    loaded, notes = set(), []
    starts = {c: e.init_from for c, e in (cfg.model.encoders or {}).items() if e.init_from}
    image_columns = [c["name"] for c in prepared.preprocess.get("images", [])]
    if starts.keys() & set(image_columns):
        columns = start_columns(model, starts, image_columns)
        loaded, notes = loaded | set(columns["loaded"]), columns["notes"]
    if cfg.model.init_from:
        info = start_from(model, cfg.model.init_from)
        loaded |= set(info["loaded"])
        notes.append(f"started from {info['path']} (model.init_from): {info['tensors_loaded']} tensors loaded, "
                     f"{len(info['new'])} new ({', '.join(info['new'][:6])}{' …' if len(info['new']) > 6 else ''})")
    for name, p in model.named_parameters():  # train.freeze holds these fixed (callbacks.Freeze)
        p.pretrained = name in loaded
        if p.pretrained and cfg.train.freeze == 1:  # a linear probe: fixed from the start
            p.requires_grad_(False)
    for note in notes:
        if note not in prepared.notes:
            prepared.note(note)
    return device.place(model, cfg.train.device, channels_last), spec


def loss_for(t: TrainConfig, prepared: Prepared):
    """The training loss, with balanced class weights where the config asks for them."""
    return training_loss(t, prepared.task, prepared.class_counts(), levels=level_values(prepared.target))


def training_batches(cfg: Config, prepared: Prepared):
    """The training batches of this rank: tensors in memory, or a stream from shards."""
    t, w = cfg.train, distributed.world()
    batch = distributed.local_batch(t.batch_size)  # this rank's rows of each global batch
    m = modality(prepared.kind)
    transform = m.train_transform(cfg)
    if prepared.shard_url is not None:
        from scaletrain.data.manifest import read_manifest
        from scaletrain.data.stream import ShardBatches

        stream = ShardBatches(read_manifest(prepared.shard_url), prepared.shard_url, "train", prepared.preprocess,
                              batch, seed=t.seed, shuffle=t.optimizer != "gd", workers=cfg.data.loader_workers,
                              device=t.device, transform=transform, rank=w.rank, world=w.size,
                              to_tensors=m.stream_tensors(prepared.preprocess, prepared.shard_url),
                              cache_bytes=cfg.data.stream_cache_mb * 2 ** 20)
        return distributed.EqualSteps(stream) if w.active else stream
    n = prepared.n_train
    if w.active and n < t.batch_size:
        raise ConfigError(f"{n} training rows are fewer than one global batch ({t.batch_size}); "
                          "lower train.batch_size or use fewer ranks")
    on = torch.device(t.device)
    return TensorBatches(device.to_device(prepared.train_inputs, on), prepared.train_y.to(on),
                         batch, shuffle=t.optimizer != "gd", seed=t.seed, rank=w.rank, world=w.size,
                         drop_last=n % t.batch_size == 1 and n > 1,  # a batch of 1 breaks batch norm
                         transform=transform)


def extra_generators(batches) -> dict[str, torch.Generator]:
    """The random generators checkpoints must carry besides the global ones."""
    generator = getattr(getattr(batches, "transform", None), "generator", None)
    return {"augment": generator} if generator is not None else {}
