"""The zero-config recipe: fill every "auto" value of the config from facts about the data.

Why these choices:
- Tables get an MLP (two hidden layers) with AdamW, a cosine schedule, dropout and early
  stopping on validation loss that restores the best epoch: on small tables the weight
  decay + early stopping pair is what keeps a net as good as a tuned linear model, and on
  large ones the MLP is what beats it.
- Images get a small ResNet (conv-BN-ReLU stages that halve resolution, a residual block
  per stage: the layout of the fast CIFAR "ResNet-9" recipes) trained with SGD + Nesterov
  and a one-cycle schedule, label smoothing 0.1 and shift augmentation. One-cycle reaches a
  given accuracy in the fewest epochs, which is what a CPU budget needs.
- Epochs follow from a target number of optimizer steps, so tiny data trains long enough
  and big data does not train for hours.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from scaletrain.config import Config
from scaletrain.errors import ConfigError


@dataclass
class DataFacts:
    kind: str                 # "table" | "image"
    task: str
    n_train: int
    n_classes: int = 0
    n_features: int = 0
    max_cardinality: int = 0
    image_shape: tuple = ()   # (channels, height, width)
    imbalance: float = 1.0    # largest class count / smallest


MAX_EPOCHS = 1000  # planned epochs of a time-limited image run: the time limit ends it first
SMALL_TABLE = 2000  # training rows below which zero-config compares linear and MLP models


def candidate_configs(config: Config, facts: DataFacts) -> list[Config]:
    """Return the resolved configs to train; the one with the best validation loss is kept.

    On small tables (under SMALL_TABLE training rows) zero-config trains both a linear model
    and an MLP: which one generalises better there depends on the data, and both train in
    seconds. Anything named explicitly is trained as named.
    """
    if config.model.name == "auto" and facts.kind == "table" and facts.n_train < SMALL_TABLE:
        tried = []
        for name in ("linear", "mlp"):
            candidate = config.model_copy(deep=True)
            candidate.model.name = name
            if name == "linear" and candidate.train.early_stopping is None:
                # a weight-decayed linear model is convex: it is trained to convergence, not
                # stopped early, so it can be refit on all rows without a validation split
                candidate.train.early_stopping = 0
            if candidate.train.time_limit:
                candidate.train.time_limit /= 2
            tried.append(resolve(candidate, facts))
        return tried
    return [resolve(config, facts)]


def _steps_to_epochs(target_steps: int, steps_per_epoch: int, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, round(target_steps / max(steps_per_epoch, 1)))))


def resolve(config: Config, facts: DataFacts) -> Config:
    """Return a copy of the config with every auto/None value replaced by a concrete one."""
    c = config.model_copy(deep=True)
    m, t, d = c.model, c.train, c.data
    image = facts.kind == "image"
    if d.task in ("auto", "classification"):
        d.task = facts.task
    if image:
        d.channels, d.image_size = facts.image_shape[0], facts.image_shape[1]
    if m.name == "auto":
        m.name = "resnet" if image else "mlp"
    if m.width is None:
        if m.name in ("cnn", "resnet"):
            m.width = 16 if facts.n_train >= 20000 else 32
        else:
            m.width = 256 if facts.n_train >= 20000 else 128
    if m.depth is None:
        m.depth = 0 if m.name in ("cnn", "resnet") else 2  # 0 = as many stages as the image size allows
    if m.hidden is None and m.name == "mlp":
        m.hidden = [m.width] * m.depth
    if m.dropout is None:
        m.dropout = 0.0 if image else 0.1
    if m.norm == "auto":
        m.norm = "none"
    if m.init == "auto":
        m.init = "xavier" if m.activation == "tanh" else "kaiming"
    if m.embedding_dim is None:
        # fastai's rule of thumb for embedding width, capped: 1.6 * cardinality ** 0.56
        m.embedding_dim = int(min(32, max(4, round(1.6 * max(facts.max_cardinality, 1) ** 0.56))))

    if t.optimizer == "auto":
        t.optimizer = "nesterov" if image else "adamw"
    sgd_family = t.optimizer in ("gd", "sgd", "momentum", "nesterov")
    if t.batch_size is None:
        if t.optimizer == "gd":
            t.batch_size = facts.n_train
        elif image:
            t.batch_size = 256 if facts.n_train >= 20000 else 64
        else:
            t.batch_size = int(min(512, max(32, 2 ** round(math.log2(max(facts.n_train, 1) / 32)))))
    t.batch_size = min(t.batch_size, max(facts.n_train, 1))
    if t.lr_find == "auto":
        # With a time budget there is no second try: a range test (~100 steps, a few % of a
        # budget) checks the recipe's step size on this data and model before training.
        # Without one, the recipe's default is kept: fast, and the same on every run.
        t.lr_find = bool(t.time_limit) and t.lr is None and t.optimizer != "gd"
    if t.lr is None:
        if t.optimizer == "gd":
            t.lr = 0.1
        elif sgd_family:
            t.lr = 0.1 if image else 0.05
        else:
            # tiny tables give few steps: a larger Adam step still converges within them
            t.lr = 2e-3 if image else (1e-2 if facts.n_train < SMALL_TABLE else 1e-3)
    if t.weight_decay is None:
        t.weight_decay = {"adamw": 0.05, "adam": 0.0}.get(t.optimizer, 5e-4)
    steps_per_epoch = math.ceil(facts.n_train / t.batch_size / t.grad_accum)
    if t.epochs is None:
        if image and t.time_limit:
            # the limit, not a count, ends the run: the one-cycle schedule anneals on time, so
            # every second of the budget is spent training (a count fitted to one machine's
            # speed would end early on a fast one and be cut short on a slow one)
            t.epochs = MAX_EPOCHS
        elif image:
            t.epochs = _steps_to_epochs(3500, steps_per_epoch, 5, 40)
        else:
            # at least 20 passes over small tables; large (streamed) ones get the step budget alone
            t.epochs = _steps_to_epochs(4000, steps_per_epoch, 20 if steps_per_epoch < 200 else 1, 200)
    if t.schedule == "auto":
        t.schedule = "onecycle" if image else "cosine"
    if t.loss == "auto":
        t.loss = "mse" if facts.task == "regression" else "cross_entropy"
    if t.label_smoothing is None:
        t.label_smoothing = 0.1 if image and t.loss == "cross_entropy" else 0.0
    if t.class_weight == "auto":
        t.class_weight = "balanced" if facts.task != "regression" and facts.imbalance >= 5 else "none"
    if t.early_stopping is None:
        t.early_stopping = 0 if image else 20
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if t.threads is None:
        t.threads = cores
    if d.loader_workers is None:
        d.loader_workers = min(4, cores - 1)  # shard readers beside the training threads
    if t.device == "auto":
        import torch

        t.device = "cuda" if torch.cuda.is_available() else "cpu"
    if t.compile == "auto":
        # Measured on this project's 2-core CPU (ResNet width 16, batch 256): 177 ms a step
        # compiled vs 158 ms eager, after 54 s of compiling; oneDNN's convolutions already run
        # fused there. On CUDA, kernel fusion is where compile pays (not measured here: no GPU).
        t.compile = "on" if t.device == "cuda" else "off"
    if t.precision == "fp16" and t.device != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA GPU (its grad scaler is CUDA-only); "
                          "use train.precision=bf16 on CPU")
    return c
