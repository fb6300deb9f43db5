"""The typed config tree: four sections, validated once at the edge.

`None` and "auto" mean "scaletrain decides from the data"; `resolve` in fit/recipe.py replaces
them so that the config.yaml written into a run holds every value that was used.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from scaletrain.durations import parse_duration  # noqa: F401 - the config's public helper
from scaletrain.errors import ConfigError


class _Section(BaseModel):
    # inf/NaN are never a meaningful setting; refusing them here beats a NaN loss later
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    # A resolved config is frozen: what a run was trained with is not changed behind its back; a changed
    # config is a copy (`with_values`, `thawed`). Not pydantic's frozen=True: the recipe resolves it.
    _frozen: bool = PrivateAttr(default=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and getattr(self, "_frozen", False):
            raise ConfigError(f"a resolved config is frozen: {type(self).__name__}.{name} cannot be set in place; "
                              "derive a copy with with_values")
        super().__setattr__(name, value)

    def _set_frozen(self, frozen: bool) -> None:
        self._frozen = frozen
        for name in type(self).model_fields:
            value = getattr(self, name)
            for part in value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]:
                if isinstance(part, _Section):
                    part._set_frozen(frozen)


# Bounds are checked when the config is read, so a bad value is named at the edge rather than
# failing deep inside a split or an optimizer.
Share = Annotated[float, Field(gt=0, lt=1)]          # a fraction of rows
Rate = Annotated[float, Field(ge=0, lt=1)]           # dropout, smoothing, warmup share
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0)]
AtLeastOne = Annotated[int, Field(ge=1)]
MAX_BLEND = 8  # members of a blend: zero-config's candidates (a config.yaml cannot ask for thousands)


class DataConfig(_Section):
    target: str | None = None
    task: Literal["auto", "binary", "multiclass", "regression", "classification", "recommend", "ctr"] = "auto"
    # column -> numeric|categorical|boolean|datetime|text|image|drop, overriding inferred roles
    columns: dict[str, str] = {}
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.15  # 0: train on every row (no early stopping)
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.15
    augment: bool = True
    # resample the training rows to balanced classes (imbalanced-learn); validation and test untouched
    resample: Literal["none", "oversample", "undersample", "smote"] = "none"
    image_size: AtLeastOne | None = None
    channels: Literal[1, 3] | None = None
    scale: Literal["standard", "minmax", "none"] = "standard"
    clip_quantile: Annotated[float, Field(ge=0, lt=0.5)] = 0.001
    missing_indicators: bool = True
    max_onehot: Count = 16
    # processes that read and transform shards ahead of training (None: one per spare core)
    loader_workers: Count | None = None
    stream_cache_mb: Count = 1024  # encoded row groups kept between epochs when shards stream without loader workers
    # fine-grained augmentation (images only); all off when augment is false
    augment_shift: Annotated[float, Field(ge=0, le=1)] = 0.1
    augment_flip: bool = False
    augment_rotate: Annotated[float, Field(ge=0, le=180)] = 0.0
    augment_scale: Rate = 0.0
    augment_noise: NonNegative = 0.0
    augment_erase: Annotated[float, Field(ge=0, le=1)] = 0.0
    # free text: a tokenizer.json, or a run directory holding one, used instead of training a
    # tokenizer on the training rows or the corpus (None: trained; set from model.init_from when given)
    tokenizer: str | None = None
    vocab_size: Annotated[int, Field(ge=100)] | None = None  # pieces of a trained tokenizer (None: from the text's size)
    # tables: fit the preprocessing statistics on this file (a public sample with the same columns)
    # instead of the training rows (what train.privacy's ε does not cover otherwise)
    preprocess_from: str | None = None
    # plain-text corpora (pretrain): a document per line or per file; JSONL's text field
    document: Literal["line", "file"] = "line"
    text_field: str = "text"
    # masked-LM pretraining: tokens per packed block, and the share of tokens chosen to predict
    block_size: Annotated[int, Field(ge=8)] | None = None
    mask_rate: Share = 0.15
    # the share of the corpus's training blocks pretraining reads (a scaling study's data axis)
    pretrain_fraction: Annotated[float, Field(gt=0, le=1)] = 1.0
    # task recommend: the interactions' columns (None: found by their names), the smallest rating that counts as
    # an interaction (None: every row counts, as a watch does), and side tables of item and user features (files)
    user: str | None = None
    item: str | None = None
    rating: str | None = None
    time: str | None = None
    min_rating: float | None = None
    items: str | None = None
    users: str | None = None


class EncoderConfig(_Section):
    """One input column's encoder (model.encoders.<column>)."""
    # an earlier image run (its CNN, resized and normalized as it was) or a pretraining run (text)
    init_from: str | None = None


class ModelConfig(_Section):
    name: Literal["auto", "linear", "mlp", "cnn", "resnet", "rnn", "conv1d", "transformer", "boosted", "blend",
                  "popularity", "ease", "mf", "twotower", "deepfm", "wide_deep"] = "auto"
    hidden: list[AtLeastOne] | None = None
    depth: Count | None = None  # hidden layers (mlp), stages (cnn, resnet; 0 = as many as fit) or blocks (conv1d)
    width: AtLeastOne | None = None
    dropout: Rate | None = None
    norm: Literal["auto", "none", "batch", "layer", "group"] = "auto"  # group: conv nets under DP-SGD
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    init: Literal["auto", "uniform", "normal", "xavier", "kaiming"] = "auto"
    embedding_dim: AtLeastOne | None = None
    # recommend: EASE's ridge penalty and the half-life of a user's past items, in items (0: all alike); None: chosen
    ease_l2: Positive | None = None
    recency: NonNegative | None = None
    # mlp on tables: each numeric column embedded before the layers (periodic: PLR); auto: the recipe's
    numeric_embedding: Literal["auto", "none", "periodic"] = "auto"
    # rnn: depth is its layers and width its state size; the cell, both directions or one, and the
    # pooling: mean over the steps, the last state, or max beside mean (auto: that for free text)
    cell: Literal["gru", "lstm"] = "gru"
    bidirectional: bool = True
    pooling: Literal["auto", "mean", "last", "max_mean"] = "auto"
    # transformer: depth is its layers and width its hidden size (None: from the data's size)
    heads: AtLeastOne | None = None
    ff: AtLeastOne | None = None  # feed-forward size (None: 4 x width)
    pre_norm: bool = False  # LayerNorm before each sublayer (stabler when deep); BERT's post-norm exports to HF
    max_positions: AtLeastOne | None = None
    # transformer: the text's TF-IDF vector also enters the outputs straight (a weight per piece
    # and class) beside the encoder's pooled state (None: on for a linear probe, train.freeze=1)
    text_tfidf: bool | None = None
    # the linear TF-IDF part also reads hashed pairs of adjacent pieces (word pairs), as TF-IDF of
    # words and word pairs does (None: on for short texts with enough rows, fit/recipe.py)
    text_pairs: bool | None = None
    text_relevance: Literal["on", "off"] = "off"  # linear text (L-BFGS): per-piece L2 from the labels (train/full_batch.py)
    init_from: str | None = None  # a pretraining or earlier run whose encoder starts this model (its tokenizer too)
    # image and sound columns: the inputs read (table: all but those; images: those alone; zero-config compares)
    inputs: Literal["all", "table", "images"] = "all"
    combiner: Literal["concat", "gated", "attention"] = "concat"  # how the inputs meet (models/combiners.py)
    test_shifts: Literal["auto", "on", "off"] = "auto"  # cnn, resnet: test-time shifts (models/vision.ConvNet)
    encoders: Annotated[dict[str, EncoderConfig], Field(max_length=64)] | None = None
    modality_dropout: Rate = 0.1
    # boosted: the trees LightGBM grew (set after training; width is then nodes per tree, depth the deepest)
    trees: AtLeastOne | None = None
    # blend (set by zero-config, train/blend.py): the candidates' model sections and their weights
    members: Annotated[list[ModelConfig], Field(max_length=MAX_BLEND)] | None = None
    weights: list[Positive] | None = None

    @model_validator(mode="after")
    def _blend_shape(self) -> ModelConfig:
        if self.name == "blend" and (not self.members or len(self.weights or []) != len(self.members)):
            raise ValueError("model.name=blend needs model.members and as many model.weights")
        if any(m.name in ("blend", "auto") for m in self.members or []):
            raise ValueError("a blend's members are trained models (linear, mlp, boosted, ...), not blends or auto")
        return self


class PrivacyConfig(_Section):
    # DP-SGD (Opacus): the (epsilon, delta) the whole training run may spend; None: not private
    epsilon: Positive | None = None
    delta: Annotated[float, Field(gt=0, lt=1)] | None = None  # None: 1 / (10 N), below 1/N as it must be
    max_grad_norm: Positive = 1.0  # each row's gradient clipped to this L2 norm before the noise


class TrainConfig(_Section):
    # lbfgs: full-batch L-BFGS on in-memory rows, to convergence (zero-config's linear model on
    # small tables; its weight decay, left unset, is then chosen by 5-fold cross-validation)
    optimizer: Literal["auto", "gd", "sgd", "momentum", "nesterov", "adam", "adamw", "lbfgs"] = "auto"
    lr: Positive | None = None
    # learning-rate range test before training: auto = on when a time limit is set and lr is not
    lr_find: bool | Literal["auto"] = "auto"
    momentum: Rate = 0.9
    weight_decay: NonNegative | None = None
    l1: NonNegative = 0.0
    batch_size: AtLeastOne | None = None
    eval_batch_size: AtLeastOne = 1024
    epochs: AtLeastOne | None = None
    schedule: Literal["auto", "constant", "step", "cosine", "onecycle"] = "auto"
    warmup: Rate = 0.0
    step_milestones: list[Share] = [0.5, 0.75]
    step_gamma: Positive = 0.1
    loss: Literal["auto", "mse", "mae", "huber", "levels", "cross_entropy", "bce"] = "auto"
    label_smoothing: Rate | None = None
    class_weight: Literal["auto", "balanced", "none"] = "auto"
    # classification: the decision (binary: the threshold; multiclass: class-prior shifts) tuned on validation rows for
    # this metric (auto: macro F1 where the largest class is 3x the rarest and validation holds 20 of it, else argmax)
    threshold_metric: Literal["auto", "none", "f1_macro", "accuracy", "balanced_accuracy"] = "auto"
    calibration: Literal["auto", "temperature", "none"] = "auto"  # temperature scaling: auto keeps it where val NLL falls
    # how zero-config chooses between its candidates on small tables (under 2,000 rows, no time limit): k-fold
    # cross-validation of each on the training rows, or their losses on the one validation split (faster)
    choose_by: Literal["validation", "cv"] = "cv"
    # zero-config on tables held in memory: gradient-boosted trees (LightGBM, compiled into the
    # run's model) join the candidates (auto, resolved to on); off: networks only
    boosting: Literal["auto", "on", "off"] = "auto"
    # small tables, after the cross-validated choice: the chosen candidate's fold models averaged into one model;
    # auto: kept when that beats the single model on the validation rows
    ensemble: Literal["auto", "on", "off"] = "auto"
    # zero-config's candidates blended with weights chosen on held-out predictions (out-of-fold or validation rows);
    # auto: kept where the blend beats the chosen candidate on the validation rows; on: whenever the weights pick
    # two or more; off: the chosen candidate alone (a written run says on or off: what it is)
    blend: Literal["auto", "on", "off"] = "auto"
    grad_accum: AtLeastOne = 1
    # fine-tuning: each layer below the head learns at this factor of the one above it (layer-wise lr decay; 1: off)
    layer_decay: Annotated[float, Field(gt=0, le=1)] = 1.0
    # the share of training in which the tensors model.init_from loaded stay fixed and only the new ones learn
    # (1: a linear probe of the pretrained features; 0: all learn from the start; None: chosen, see fit/recipe.py)
    freeze: Annotated[float, Field(ge=0, le=1)] | None = None
    clip: NonNegative = 0.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 for image conv nets on an AMX CPU, else fp32
    early_stopping: Count | None = None
    monitor: Literal["val_loss", "val_score"] = "val_loss"
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0  # NumPy seeds are 32-bit
    time_limit: Positive | None = None
    # under a time limit, a conv net's width halved from the data-size default until 10 epochs fit (epochs), or
    # chosen by a scaling probe (probe: fitting/size_probe.py; not the default, it did not help: BENCHMARKS.md)
    sizing: Literal["epochs", "probe"] = "epochs"
    # with several ranks: shard parameters, gradients and optimizer state (FSDP) instead of replicating them (DDP)
    fsdp: bool = False
    on_nan: Literal["stop", "skip"] = "stop"  # a NaN/inf loss stops the run, or skips its batch
    device: Literal["auto", "cpu", "cuda"] = "auto"
    channels_last: bool = True
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile of the training forward pass
    threads: AtLeastOne | None = None
    privacy: PrivacyConfig = PrivacyConfig()


class CheckpointConfig(_Section):
    every_steps: Count = 0
    every_minutes: NonNegative = 0.0
    keep: AtLeastOne = 2


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def is_frozen(self) -> bool:
        return self._frozen

    def frozen(self) -> "Config":
        """This config, frozen (in place: what resolution hands on)."""
        self._set_frozen(True)
        return self

    def thawed(self) -> "Config":
        """A copy that may be changed (the start of another resolution: a student's, a cell's)."""
        copy = self.model_copy(deep=True)
        copy._set_frozen(False)
        return copy

    def with_values(self, values: dict[str, Any]) -> "Config":
        """A copy, not frozen, with dotted keys (`train.lr`) set to typed values, each checked as
        it is set."""
        copy = self.thawed()
        for key, value in values.items():
            section, _, name = key.partition(".")
            if key not in VALID_KEYS:
                raise _unknown_key(key)
            try:
                setattr(getattr(copy, section), name, value)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ConfigError(f"config value for '{key}' is invalid: {err['msg']} (got {value!r})") from None
        return copy


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "checkpoint": CheckpointConfig}
VALID_KEYS = [f"{s}.{k}" for s, cls in SECTIONS.items() for k in cls.model_fields]


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, VALID_KEYS, n=1, cutoff=0.4)
    if not close:  # a bare key such as "lr": look for it in every section
        close = [k for k in VALID_KEYS if k.split(".", 1)[1] == key.split(".")[-1]]
    hint = f"; did you mean '{close[0]}'?" if close else "; see `scaletrain train --help`"
    return ConfigError(f"unknown config key '{key}'{hint}")


def _check_keys(tree: dict[str, Any]) -> None:
    for section, values in tree.items():
        if section not in SECTIONS:
            raise _unknown_key(str(section))
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' must be a mapping of keys to values")
        for key in values:
            if f"{section}.{key}" not in VALID_KEYS:
                raise _unknown_key(f"{section}.{key}")


def _drop_empty_sections(tree: dict[str, Any]) -> dict[str, Any]:
    """Return the tree without sections left empty in YAML (`data:` with nothing under it)."""
    return {k: v for k, v in tree.items() if not (k in SECTIONS and v is None)}


def build_config(tree: dict[str, Any] | None = None) -> Config:
    """Return a validated Config from a nested dict, with errors that name the key."""
    tree = _drop_empty_sections(tree or {})
    _check_keys(tree)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"config value for '{key}' is invalid: {err['msg']} (got {err.get('input')!r})") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Return the nested dict in a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping with sections data/model/train/checkpoint")
    return tree


def parse_set(item: str) -> tuple[str, Any]:
    """Split one `--set section.key=value` into its key and YAML-parsed value."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}' must look like section.key=value")
    key, raw = item.split("=", 1)
    if raw.strip().lower() in ("on", "off", "yes", "no"):  # YAML 1.1 reads these as booleans; options
        return key.strip(), raw.strip()  # such as train.ensemble=off mean the word (pydantic reads it for a bool)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def merge_override(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (section.key, section__key or a bare key unique across sections) in tree."""
    key = key.replace("__", ".")
    if "." not in key:
        if key in SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                merge_override(tree, f"{key}.{sub}", v)
            return
        if key in SECTIONS:  # model="mlp" is short for model.name="mlp"
            key = f"{key}.name"
        else:
            owners = [k for k in VALID_KEYS if k.split(".", 1)[1] == key]
            if len(owners) != 1:
                raise _unknown_key(key)
            key = owners[0]
    section, name = key.split(".", 1)
    name, _, sub = name.partition(".")  # train.privacy.epsilon: a key of a sub-section
    if f"{section}.{name}" == "model.encoders" and sub:  # model.encoders.<column>.init_from: a column's own encoder
        column, _, field = sub.rpartition(".")
        if not column or field not in EncoderConfig.model_fields:
            raise ConfigError(f"'{key}': write model.encoders.<column>.init_from=RUN (a column's pretrained encoder)")
        tree.setdefault(section, {}).setdefault(name, {}).setdefault(column, {})[field] = value
        return
    if f"{section}.{name}" not in VALID_KEYS or (sub and sub not in _subsection_keys(section, name)):
        raise _unknown_key(key)
    if sub:
        tree.setdefault(section, {}).setdefault(name, {})[sub] = value
    else:
        tree.setdefault(section, {})[name] = value


def _subsection_keys(section: str, name: str) -> list[str]:
    annotation = SECTIONS[section].model_fields[name].annotation
    return list(annotation.model_fields) if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def make_config(config_file: str | Path | dict | None = None, sets: list[str] | None = None,
                **overrides: Any) -> Config:
    """Return the Config from a YAML file or dict, then `--set` items, then keyword overrides."""
    if isinstance(config_file, dict):
        tree = {k: dict(v) if isinstance(v, dict) else v for k, v in config_file.items()}
    elif config_file is not None:
        tree = load_yaml(config_file)
    else:
        tree = {}
    tree = _drop_empty_sections(tree)
    _check_keys(tree)
    for item in sets or []:
        merge_override(tree, *parse_set(item))
    for key, value in overrides.items():
        if value is not None:
            merge_override(tree, key, value)
    return build_config(tree)
