"""`model.init_from`: a model starts from a pretrained encoder (`scaletrain pretrain`) or from
the backbone of an earlier run, and only its head is new.

From a pretraining run every encoder tensor is copied into the model's text encoder; from an
earlier `train` run every tensor whose name and shape match, except the output layer's (a new
task's head starts fresh even where the class count happens to match). What was copied and
what is new is counted, so a silent partial load cannot pass as a fine-tune.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from scaletrain.errors import ConfigError
from scaletrain.rundir import RunDir


def _run(path: str) -> RunDir:
    run = RunDir(path)
    if not (Path(path) / "model.safetensors").is_file():
        raise ConfigError(f"model.init_from '{path}' is not a run directory (no model.safetensors); give the --out "
                          "folder of `scaletrain pretrain` or of an earlier `scaletrain train`")
    return run


def pretrained_shape(path: str) -> dict | None:
    """The encoder shape of a pretraining run (None for an earlier train run)."""
    spec = _run(path).read_spec()
    return spec["encoder"] if spec.get("kind") == "masked_lm" else None


def output_layer(model: nn.Module) -> str:
    """The name of the model's last Linear layer: its head."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ConfigError("model.init_from: this model has no output layer to keep new")
    return names[-1]


def start_from(model: nn.Module, path: str) -> dict:
    """Copy the pretrained tensors into `model` in place; return what was loaded and what is new."""
    run = _run(path)
    weights = run.read_weights()
    own = model.state_dict()
    if run.read_spec().get("kind") == "masked_lm":
        prefix = next((name[: -len("encoder.tokens.weight")] for name in own if name.endswith("encoder.tokens.weight")),
                      None)
        if prefix is None:
            raise ConfigError(f"model.init_from '{path}' is a pretrained text encoder; it starts a "
                              "model.name=transformer model on data with a text column")
        source = {prefix + name: value for name, value in weights.items() if name.startswith("encoder.")}
        encoder_tensors = len(source)
    else:
        head = output_layer(model) + "."
        source = {name: value for name, value in weights.items() if not name.startswith(head)}
        encoder_tensors = None
    loaded, mismatched = [], []
    for name, value in source.items():
        if name in own and own[name].shape == value.shape:
            loaded.append(name)
        elif name in own:
            mismatched.append(f"{name} {tuple(value.shape)} vs {tuple(own[name].shape)}")
    if encoder_tensors is not None and len(loaded) != encoder_tensors:
        raise ConfigError(f"model.init_from '{path}': {encoder_tensors - len(loaded)} of its {encoder_tensors} encoder "
                          f"tensors do not fit this model ({'; '.join(mismatched[:3])}); leave model.depth, "
                          "width, heads and ff unset so that they are the pretrained encoder's")
    if not loaded:
        raise ConfigError(f"model.init_from '{path}': none of its tensors fits this model; was it trained on other data?")
    with torch.no_grad():
        for name in loaded:
            own[name].copy_(source[name])
    new = [name for name in own if name not in loaded]
    return {"path": str(path), "tensors_loaded": len(loaded), "loaded": loaded, "new": new}


def start_columns(model: nn.Module, starts: dict[str, str], image_columns: list[str]) -> dict:
    """Copy each media column's earlier run (model.encoders.<column>.init_from: a CNN trained on
    images or sounds) into that column's encoder, every tensor but the run's output layer's; a tensor
    that does not fit is refused, never skipped. Return what was loaded and from where."""
    from scaletrain.models.tabular import Pictures

    loaded, notes = [], []
    holders = [(prefix, m) for prefix, m in model.named_modules() if isinstance(m, Pictures)]
    for j, column in enumerate(image_columns):
        if column not in starts or not holders:  # a candidate that reads the table's other columns alone
            continue
        weights = _run(starts[column]).read_weights()
        for prefix, pictures in holders:  # every member of an ensemble starts from it
            body = pictures.encoders[j].body.state_dict()
            missing = [name for name in body if name not in weights or weights[name].shape != body[name].shape]
            if missing:
                raise ConfigError(f"model.encoders.{column}.init_from '{starts[column]}': its tensor '{missing[0]}' "
                                  "does not fit the column's encoder; was the run changed since it was read?")
            pictures.encoders[j].body.load_state_dict({name: weights[name] for name in body})
            loaded += [f"{prefix}.encoders.{j}.body.{name}".lstrip(".") for name in body]
        notes.append(f"column '{column}' started from {starts[column]} (model.encoders.{column}.init_from): "
                     f"{len(body)} encoder tensors loaded, its output layer left out")
    return {"loaded": loaded, "notes": notes}


def column_starts(cfg) -> dict[str, str]:
    """model.encoders' starts by column. A pretraining run starts the table's text encoder (one
    reads all its text columns): it becomes model.init_from, as if given there. The others, earlier
    image runs, are read by the table (each column's images sized and normalized as that run's)."""
    starts = {column: e.init_from for column, e in (cfg.model.encoders or {}).items() if e.init_from}
    for column, path in starts.items():
        if not RunDir(path).is_pretrained():
            continue
        if cfg.model.init_from not in (None, path):
            raise ConfigError(f"model.encoders.{column}.init_from '{path}' and model.init_from "
                              f"'{cfg.model.init_from}' both start the text encoder; the text columns share one")
        cfg.model.init_from = path
    return starts
