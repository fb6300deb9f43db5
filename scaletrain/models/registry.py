"""Names map to builders (no if/elif chains); each builder gets plain values from the config."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from torch import nn

from scaletrain.errors import ConfigError
from scaletrain.models.clicks import ClickNet
from scaletrain.models.ensemble import Ensemble
from scaletrain.models.init import apply_init
from scaletrain.models.recurrent import Recurrence, RecurrentNet, RecurrentText
from scaletrain.models.tabular import FlatImageNet, PeriodicNumbers, Pictures, TabularNet, TextBag, mlp_layers
from scaletrain.models.temporal import TimeConvNet
from scaletrain.models.transformer import EncoderShape, PooledText
from scaletrain.models.trees import TreeEnsemble
from scaletrain.models.vision import Normalize, build_convnet, picture_encoder


@dataclass
class ModelSpec:
    """What a builder needs to know about the data: inputs, outputs and modality."""

    kind: str                      # the modality's name (recorded; builders go by the shapes)
    n_out: int
    n_dense: int = 0               # tables: dense feature count; sequences: the row's other numbers
    cardinalities: tuple = ()      # tables: categories per embedded column
    shape: tuple = ()              # images: (channels, height, width); sequences: (steps, features)
    mean: tuple = ()
    std: tuple = ()
    vocab_size: int = 0            # tables with free text: the tokenizer's vocabulary (0: no text)
    pair_buckets: int = 0          # and the hashed piece pairs' table for the linear TF-IDF part (0: none)
    pictures: tuple = ()           # tables' image columns: (channels, mean, std[, backbone]) each, in column order
    members: int = 1               # above 1: a bagged ensemble of that many copies of the model
    average: str = "mean"          # how an ensemble (bagged or blended) averages them (models/ensemble.py)


def _hidden(m) -> list[int]:
    return list(m.hidden) if m.hidden is not None else [m.width or 128] * (m.depth or 2)


def _dense_model(spec: ModelSpec, m, hidden: list[int]) -> nn.Module:
    norm = "none" if m.norm == "auto" else m.norm  # builders accept an unresolved config too

    def body(n_in: int) -> nn.Module:
        # the raw numbers lead the body's input only when the inputs are concatenated (a gate mixes them)
        if m.numeric_embedding == "periodic" and hidden and spec.n_dense and not spec.shape and m.combiner == "concat":
            numbers = PeriodicNumbers(spec.n_dense)  # first in the body: explanations see the raw dense block
            return nn.Sequential(numbers, mlp_layers(n_in + numbers.width_added, hidden, spec.n_out, m.activation,
                                                     m.dropout or 0.0, norm))
        return mlp_layers(n_in, hidden, spec.n_out, m.activation, m.dropout or 0.0, norm)

    if spec.shape:  # images: flattened pixels
        c, h, w = spec.shape
        return FlatImageNet(Normalize(list(spec.mean), list(spec.std)), body(c * h * w))
    text = TextBag(spec.vocab_size) if spec.vocab_size and hidden else None
    linear_text = (spec.vocab_size, spec.n_out, _pairs(spec, m)) if spec.vocab_size and not hidden else None
    return TabularNet(spec.n_dense, list(spec.cardinalities), m.embedding_dim or 8, body, text, linear_text,
                      _pictures(spec, m), m.combiner)


def _pictures(spec: ModelSpec, m) -> Pictures | None:
    """The image columns' encoders, unless the model reads the table's other columns alone."""
    if m.inputs != "all" and not spec.pictures:
        raise ConfigError(f"model.inputs={m.inputs} chooses between a table's image columns and its other columns; "
                          "this data has no image column")
    if not spec.pictures or m.inputs == "table":
        return None
    encoders = [picture_encoder(*picture) for picture in spec.pictures]
    return Pictures(encoders, m.modality_dropout, alone=m.inputs == "images")


def _pairs(spec: ModelSpec, m) -> int:
    return spec.pair_buckets if m.text_pairs else 0


def build_linear(spec: ModelSpec, m) -> nn.Module:
    return _dense_model(spec, m, [])


def build_mlp(spec: ModelSpec, m) -> nn.Module:
    return _dense_model(spec, m, _hidden(m))


def encoder_shape(spec: ModelSpec, m) -> EncoderShape:
    return EncoderShape(vocab_size=spec.vocab_size, max_positions=m.max_positions or 512, layers=m.depth or 2,
                        width=m.width or 256, heads=m.heads or 4, ff=m.ff or 4 * (m.width or 256),
                        dropout=0.1 if m.dropout is None else m.dropout, pre_norm=m.pre_norm)


def _text_reader(spec: ModelSpec, m, text: nn.Module) -> nn.Module:
    """A text encoder (its pooled state) beside the table's other columns, then the body (a
    linear head unless model.hidden names layers); with model.text_tfidf, the text's TF-IDF
    vector added straight into the outputs too."""
    norm = "none" if m.norm == "auto" else m.norm

    def body(n_in: int) -> nn.Module:
        return mlp_layers(n_in, list(m.hidden or []), spec.n_out, m.activation, m.dropout or 0.0, norm)

    return TabularNet(spec.n_dense, list(spec.cardinalities), m.embedding_dim or 8, body, text,
                      (spec.vocab_size, spec.n_out, _pairs(spec, m)) if m.text_tfidf else None, _pictures(spec, m),
                      m.combiner)


def build_transformer(spec: ModelSpec, m) -> nn.Module:
    """A Transformer encoder over a table's free text (models/transformer.py)."""
    if not spec.vocab_size:
        raise ConfigError("model.name=transformer reads free text and this data has no text column; "
                          "use linear or mlp for tables, cnn or resnet for images")
    return _text_reader(spec, m, PooledText(encoder_shape(spec, m)))


def _conv(residual: bool) -> Callable:
    def build(spec: ModelSpec, m) -> nn.Module:
        if not spec.shape:
            raise ConfigError(f"model.name '{m.name}' needs images; use linear or mlp for tables")
        c, h, w = spec.shape
        net = build_convnet(c, min(h, w), spec.n_out, m.width or 16, m.depth, residual, m.dropout or 0.0,
                            list(spec.mean), list(spec.std), "group" if m.norm == "group" else "batch")
        net.shifted_views = {"on": True, "off": False}.get(m.test_shifts)  # auto: None until validation decides
        return net
    return build


def _sequence_shape(spec: ModelSpec, name: str) -> int:
    """Numbers per step of the sequences a spec describes: (steps, features) sequences, or a
    one-channel spectrogram's (1, mels, frames) frames of mel bands."""
    if len(spec.shape) == 2:
        return spec.shape[1]
    if len(spec.shape) == 3 and spec.shape[0] == 1:
        return spec.shape[1]
    texts = " or a table's free text" if name == "rnn" else ""
    raise ConfigError(f"model.name={name} reads sequences of vectors (a sequence column, a sound clip's frames, a "
                      f"one-channel image's rows){texts}; use linear or mlp for tables, cnn or resnet for color images")


def build_rnn(spec: ModelSpec, m) -> nn.Module:
    """A GRU or LSTM over a sequence of vectors: a sequence column's steps, a sound clip's
    frames; or over a table's free text, its word pieces (models/recurrent.RecurrentText)."""
    if spec.vocab_size:
        if m.pooling == "last":
            raise ConfigError("model.pooling=last reads a sequence's final step; free text is pooled by "
                              "max_mean (the default) or mean")
        shape = Recurrence(m.cell, m.width or 96, m.depth or 1, m.bidirectional,
                           "max_mean" if m.pooling == "auto" else m.pooling)
        return _text_reader(spec, m, RecurrentText(spec.vocab_size, shape, 0.3 if m.dropout is None else m.dropout))
    pooling = "mean" if m.pooling == "auto" else m.pooling
    shape = Recurrence(m.cell, m.width or 64, m.depth or 2, m.bidirectional, pooling)
    return RecurrentNet(_sequence_shape(spec, "rnn"), spec.n_out, shape, 0.0 if m.dropout is None else m.dropout,
                        spec.n_dense)


def build_conv1d(spec: ModelSpec, m) -> nn.Module:
    """Dilated 1-d convolutions over the steps of a sequence of vectors."""
    return TimeConvNet(_sequence_shape(spec, "conv1d"), spec.n_out, m.width or 64, m.depth or 3,
                       0.0 if m.dropout is None else m.dropout, spec.n_dense)


def _clicks(factorized: bool) -> Callable:
    """Wide & Deep (hashed crosses) or DeepFM (a factorization machine) over a table's columns."""
    def build(spec: ModelSpec, m) -> nn.Module:
        if spec.shape or spec.vocab_size or spec.pictures:
            raise ConfigError(f"model.name={m.name} reads a table's numbers and ids (click-through); "
                              "use mlp or transformer for free text, cnn or resnet for images")
        dim = m.embedding_dim or 16
        deep = mlp_layers(spec.n_dense + dim * len(spec.cardinalities), _hidden(m), spec.n_out, m.activation,
                          m.dropout or 0.0, "none" if m.norm == "auto" else m.norm)
        return ClickNet(spec.n_dense, list(spec.cardinalities), dim, spec.n_out, deep, factorized)
    return build


def build_boosted(spec: ModelSpec, m) -> nn.Module:
    """Boosted trees grown elsewhere (train/boosted.py): their tables' shape is in the config."""
    if spec.shape or spec.vocab_size or spec.pictures:
        raise ConfigError("model.name=boosted grows trees on tables of numbers and categories; "
                          "use linear or mlp for free text, cnn or resnet for images")
    return TreeEnsemble(m.trees or 1, m.width or 1, spec.n_out, m.depth or 0)


def build_blend(spec: ModelSpec, m) -> nn.Module:
    """Zero-config's candidates, each built from its own model section, averaged with the
    weights chosen on held-out predictions (train/blend.py)."""
    return Ensemble([build_model(spec, member) for member in m.members], spec.average, list(m.weights))


MODELS: dict[str, Callable[[ModelSpec, object], nn.Module]] = {
    "linear": build_linear,
    "mlp": build_mlp,
    "cnn": _conv(residual=False),
    "resnet": _conv(residual=True),
    "rnn": build_rnn,
    "conv1d": build_conv1d,
    "transformer": build_transformer,
    "boosted": build_boosted,
    "deepfm": _clicks(factorized=True),
    "wide_deep": _clicks(factorized=False),
    "blend": build_blend,
}
KEEPS_ITS_INIT = ("transformer", "blend")  # initialized as BERT is (models/transformer.py), not re-initialized


def build_model(spec: ModelSpec, model_config) -> nn.Module:
    """Return the named model, initialised with the configured scheme."""
    if model_config.name not in MODELS:
        raise ConfigError(f"unknown model '{model_config.name}'; choose one of {sorted(MODELS)}")
    if spec.members > 1:
        return Ensemble([build_model(replace(spec, members=1), model_config) for _ in range(spec.members)],
                        spec.average)
    model = MODELS[model_config.name](spec, model_config)
    if model_config.name not in KEEPS_ITS_INIT or model_config.init != "auto":
        apply_init(model, "kaiming" if model_config.init == "auto" else model_config.init)
    return model


def fit_to_rows(model: nn.Module, inputs: tuple | None) -> None:
    """Fit the buffers a model fits on its training rows before training (models/tabular.PiecePairs)."""
    for module in model.modules() if inputs else ():
        if isinstance(module, TabularNet):
            module.fit_to_rows(inputs)
