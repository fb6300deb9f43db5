"""The zero-config recipe: fill every "auto" value of the config from facts about the data.

Each modality states its own defaults (model family, optimizer, schedule, batch size, step
size, epochs: see `Recipe` in scaletrain/modalities/); what is decided the same way for every
modality is here. Epochs follow from a target number of optimizer steps, so tiny data trains
long enough and big data does not train for hours.
"""
from __future__ import annotations

import math

from scaletrain.config import Config
from scaletrain.errors import ConfigError
from scaletrain.modalities import DataFacts, modality
from scaletrain.parallel import distributed
from scaletrain.runtime import cores
from scaletrain.tasks import task_of
from scaletrain.train.device import native_bf16, resolve_device

__all__ = ["DataFacts", "candidate_configs", "resolve"]
SGD_FAMILY = ("gd", "sgd", "momentum", "nesterov")
MIN_THRESHOLD_ROWS = 20  # validation rows of the rarer class a tuned decision threshold needs
THRESHOLD_IMBALANCE = 3  # majority / minority from which the binary threshold is tuned (minority < 25%)
CONV_NETS = ("cnn", "resnet")


def candidate_configs(config: Config, facts: DataFacts) -> list[Config]:
    """Return the resolved configs to train; the one with the best validation loss is kept.

    The modality names the candidates (small tables: a linear model and an MLP); anything
    named explicitly is trained as named. Candidates share a time limit equally.
    """
    names = modality(facts.kind).candidates(config, facts)
    if distributed.world().active:  # trees grow in one process: data-parallel ranks train networks
        names = [n for n in names if n != "boosted"] or names
    if config.train.privacy.epsilon is not None:  # each model trained on the rows spends its own ε: one is
        names = names[:1]
    tried = []
    for label in names:
        candidate = config.thawed()
        name, _, inputs = label.partition(":")  # "mlp:table": an MLP over some of the inputs
        candidate.model.name, candidate.model.inputs = name, inputs or candidate.model.inputs
        if len(names) > 1 and name == "linear" and candidate.train.optimizer == "auto" and not facts.streamed:
            # a weight-decayed linear model is convex: solved to convergence by full-batch
            # L-BFGS (its L2 strength cross-validated, as LogisticRegressionCV does), not stopped
            # early, so it can be refit on all rows without a validation split
            candidate.train.optimizer = "lbfgs"
        elif len(names) > 1 and name == "linear" and candidate.train.early_stopping is None:
            candidate.train.early_stopping = 0  # streamed: trained by the recipe's optimizer to its end
        if name != "transformer" and candidate.model.init_from and len(names) > 1:
            from scaletrain.train.transfer import pretrained_shape

            if pretrained_shape(candidate.model.init_from) is not None:  # a text encoder: only the
                candidate.model.init_from = None  # Transformer starts from it; the others share its tokenizer
        tried.append(resolve(candidate, facts))
    return tried


def resolve(config: Config, facts: DataFacts) -> Config:
    """Return a copy of the config with every auto/None value replaced by a concrete one (the
    range test, the L2 search and sizing still set theirs; trained, it is frozen: `Trained`)."""
    c = config.thawed()
    if c.data.task in ("auto", "classification"):
        c.data.task = facts.task
    recipe = modality(facts.kind).recipe
    recipe.fit_data(c.data, facts)
    _resolve_model(c, facts, recipe)
    _resolve_training(c, facts, recipe)
    _resolve_runtime(c, recipe.bf16_pays(c.model))
    if c.train.privacy.epsilon is not None:
        _resolve_privacy(c)
    return c


def _resolve_privacy(c: Config) -> None:
    """What DP-SGD changes: norms that mix rows (BatchNorm) replaced, nothing else trained on the
    rows beyond the one model (no learning-rate range test, no folds, no bagging), no compile
    (per-row gradient hooks), clipping per row instead of per batch."""
    m, t = c.model, c.train
    if m.name in CONV_NETS:
        m.norm = "group"
    elif m.norm == "batch":
        m.norm = "layer"
    t.lr_find, t.choose_by, t.ensemble, t.compile, t.clip = False, "validation", "off", "off", 0.0


def _resolve_model(c: Config, facts: DataFacts, recipe) -> None:
    m = c.model
    if m.name == "auto":
        m.name = recipe.model
    recipe.fit_model(m, facts)
    if m.name == "transformer":
        _resolve_transformer(c, facts)
    if m.name == "rnn" and getattr(facts, "text_length", 0):
        _resolve_text_rnn(c, facts, recipe)
    if m.pooling == "auto":
        m.pooling = "mean"
    if m.width is None:
        large = facts.n_train >= 20000
        m.width = (16 if large else 32) if m.name in CONV_NETS else (256 if large else 128)
    if m.depth is None:
        m.depth = 0 if m.name in CONV_NETS else 2  # 0 = as many stages as the image size allows
    if m.hidden is None and m.name == "mlp":
        m.hidden = [m.width] * m.depth
    if m.dropout is None:
        m.dropout = recipe.dropout
    if m.norm == "auto":
        m.norm = "none"
    if m.init == "auto" and m.name != "transformer":  # auto there: BERT's N(0, 0.02)
        m.init = "xavier" if m.activation == "tanh" else "kaiming"
    if m.numeric_embedding == "auto":
        m.numeric_embedding = recipe.numeric_embedding
    if m.name not in CONV_NETS:  # the views are a conv net's; theirs stay auto until validation decides
        m.test_shifts = "off"
    # what no modality decided: the model's defaults where its facts say nothing
    m.text_pairs = bool(m.text_pairs)
    m.embedding_dim = m.embedding_dim or 4  # the width rule's value with no categories


PROBE_ROWS = 1000  # up to this many labelled rows, a pretrained encoder is probed, not fine-tuned


def _resolve_transformer(c: Config, facts: DataFacts) -> None:
    """The encoder's shape: a pretrained one's (model.init_from), else a small BERT (2 layers,
    width 256: what a few thousand labelled texts can train from scratch); and a step size for
    fine-tuning (1e-4) or for training from scratch (5e-4), warmed up over 10% of training.

    With few labels (up to PROBE_ROWS rows in memory, one process) a pretrained encoder stays
    frozen and the head on its pooled state and the text's TF-IDF vector is a logistic
    regression, solved by full-batch L-BFGS with its L2 strength cross-validated: a linear
    probe, convex, so it is refit on every row. BBC News, 33 labelled articles, one 12-minute
    pretraining, test accuracy over 3 draws: 0.834 probed, 0.803 with every layer fine-tuned by
    AdamW (10x the time), 0.722 from scratch (BENCHMARKS.md). PROBE_ROWS itself is a guess: only
    33 labels were measured."""
    m, t = c.model, c.train
    if m.init_from:
        from scaletrain.train.transfer import pretrained_shape

        shape = pretrained_shape(m.init_from)
        if shape is not None:
            m.depth, m.width, m.heads, m.ff = shape["layers"], shape["width"], shape["heads"], shape["ff"]
            m.pre_norm, m.max_positions = shape["pre_norm"], shape["max_positions"]
            m.dropout = shape["dropout"] if m.dropout is None else m.dropout
    m.depth = m.depth or 2
    m.width = m.width or 256
    m.heads = m.heads or max(1, m.width // 64)
    m.ff = m.ff or 4 * m.width
    m.max_positions = m.max_positions or 512
    m.dropout = 0.1 if m.dropout is None else m.dropout
    m.hidden = m.hidden or []
    if t.freeze is None:
        few = facts.n_train <= PROBE_ROWS and not facts.streamed and not distributed.world().active
        t.freeze = 1.0 if m.init_from and few and t.optimizer in ("auto", "lbfgs") else 0.0
    if t.freeze == 1 and t.optimizer == "auto" and not m.hidden and not facts.streamed:
        t.optimizer = "lbfgs"  # weight decay None: cross-validated (train/full_batch.py)
        m.text_tfidf = True if m.text_tfidf is None else m.text_tfidf
        return
    m.text_tfidf = bool(m.text_tfidf)
    t.optimizer = "adamw" if t.optimizer == "auto" else t.optimizer
    t.lr = t.lr or (1e-4 if m.init_from else 5e-4)
    t.weight_decay = 0.01 if t.weight_decay is None else t.weight_decay
    t.warmup = t.warmup or 0.1
    t.clip = t.clip or 1.0


TEXT_RNN_ROWS = 100_000  # texts the recurrent reader reads in all (its epochs: this over the rows, 1 to 6)


def _resolve_text_rnn(c: Config, facts: DataFacts, recipe) -> None:
    """A bidirectional GRU (96 states, one layer) over the word pieces, pooled by max and mean,
    a linear head: AdamW at 3e-3, batches of up to 256, clipped, for a fixed number of epochs
    with a cosine decay (six on 16k clothing reviews, where validation peaked at the fifth of
    eight at a constant rate). Not stopped on the validation rows: its outputs there stay as
    honest as the linear model's, so the two can be blended on them (fitting/candidates.py)."""
    m, t = c.model, c.train
    m.pooling = "max_mean" if m.pooling == "auto" else m.pooling
    m.width, m.depth = m.width or 96, m.depth or 1
    m.dropout = 0.3 if m.dropout is None else m.dropout
    m.hidden = m.hidden or []
    m.text_tfidf = bool(m.text_tfidf)
    t.optimizer = "adamw" if t.optimizer == "auto" else t.optimizer
    t.lr = t.lr or 3e-3
    t.weight_decay = 0.01 if t.weight_decay is None else t.weight_decay
    t.batch_size = t.batch_size or min(256, recipe.batch_size(facts.n_train))
    t.clip = t.clip or 1.0
    t.epochs = t.epochs or min(6, max(1, round(TEXT_RNN_ROWS / max(facts.n_train, 1))))
    t.early_stopping = 0 if t.early_stopping is None else t.early_stopping


def _resolve_training(c: Config, facts: DataFacts, recipe) -> None:
    t, no_validation = c.train, c.data.val_fraction == 0
    if t.optimizer == "auto":
        t.optimizer = recipe.optimizer
    if t.optimizer == "lbfgs":  # one full batch, solved to convergence: nothing to schedule or stop
        t.batch_size, t.epochs, t.lr, t.lr_find, t.schedule = facts.n_train, 1, t.lr or 1.0, False, "constant"
        t.early_stopping = 0 if t.early_stopping is None else t.early_stopping
    if t.batch_size is None:
        t.batch_size = facts.n_train if t.optimizer == "gd" else recipe.batch_size(facts.n_train)
    t.batch_size = min(t.batch_size, max(facts.n_train, 1))
    if t.lr_find == "auto":
        # With a time budget there is no second try: a range test (~100 steps, a few % of a
        # budget) checks the recipe's step size on this data and model before training.
        # Without one, the recipe's default is kept: fast, and the same on every run.
        t.lr_find = bool(t.time_limit) and t.lr is None and t.optimizer != "gd"
    if t.lr is None:
        t.lr = 0.1 if t.optimizer == "gd" else recipe.lr(t.optimizer, facts.n_train)
    if t.weight_decay is None and t.optimizer != "lbfgs":  # lbfgs: chosen by cross-validation
        t.weight_decay = {"adamw": 0.05, "adam": 0.0}.get(t.optimizer, 5e-4)
    if t.epochs is None:
        t.epochs = recipe.epochs(math.ceil(facts.n_train / t.batch_size / t.grad_accum), t.time_limit, facts.n_train)
    if t.schedule == "auto":
        t.schedule = recipe.schedule
    if t.loss == "auto":
        t.loss = task_of(facts.task).auto_loss(facts.levels)
    if t.label_smoothing is None:
        t.label_smoothing = recipe.label_smoothing if t.loss == "cross_entropy" else 0.0
    if t.threshold_metric == "auto":
        # A tuned threshold (binary) or class-prior shift (multiclass) fixes what imbalance does to
        # a decision without distorting the probabilities (reweighting does: calibration suffers).
        # It needs enough rare-class rows in validation to be measured (below 20, one row moves the
        # F1 by 5%), and on balanced
        # classes 0.5 is already near the best: tuning there only fits validation noise
        # (breast cancer, 5 splits: accuracy 0.9664 tuned vs 0.9692 for the baseline).
        imbalanced = task_of(facts.task).classifies and facts.imbalance >= THRESHOLD_IMBALANCE
        t.threshold_metric = "f1_macro" if imbalanced and facts.val_minority >= MIN_THRESHOLD_ROWS else "none"
    if t.boosting == "auto":
        t.boosting = "on"  # the candidates were named before resolving: the config says what was allowed
    if t.class_weight == "auto":
        weighted = task_of(facts.task).classifies and facts.imbalance >= 5 and t.threshold_metric == "none"
        t.class_weight = "balanced" if weighted else "none"
    if t.early_stopping is None:
        t.early_stopping = 0 if no_validation else recipe.early_stopping  # nothing to stop on without validation
    if no_validation and t.early_stopping:
        raise ConfigError("train.early_stopping needs validation rows; set data.val_fraction above 0 "
                          "or train.early_stopping=0")


def _resolve_runtime(c: Config, bf16_pays: bool) -> None:
    t, d = c.train, c.data
    if t.threads is None:
        t.threads = cores()
    if d.loader_workers is None:
        d.loader_workers = min(4, cores() - 1)  # shard readers beside the training threads
    t.device = resolve_device(t.device)
    if t.compile == "auto":
        # Off on both devices (BENCHMARKS.md, "the CUDA path"). 2-core CPU, ResNet width 16,
        # batch 256: 177 ms a step compiled vs 158 eager, after 54 s of compiling. H200: 6.0 ms
        # compiled (bf16) vs 4.5 eager (fp32) at batch 256, 8.1 vs 7.6 at 2048, after 20 s of
        # compiling and a recompile for the last, smaller batch; a 30 s run spent most of it there.
        t.compile = "off"
    if t.precision == "auto":  # DP-SGD's per-row norms are fp32 only (train/private.check_private)
        fast = bf16_pays and native_bf16(t.device) and t.privacy.epsilon is None
        t.precision = "bf16" if fast else "fp32"
    if t.precision == "fp16" and t.device != "cuda":
        raise ConfigError("train.precision=fp16 needs a CUDA GPU (its grad scaler is CUDA-only); "
                          "use train.precision=bf16 on CPU")
