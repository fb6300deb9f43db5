"""Media columns that start from an earlier run (model.encoders.<column>.init_from): its CNN,
without its output layer, becomes the column's encoder, and the column's cells are read as that
run read its own (an image run's size and normalization, a sound run's rate and log-mel front)."""
from __future__ import annotations

from pathlib import Path

import yaml

from scaletrain.errors import ConfigError

FRONT = ("rate", "n_fft", "hop", "n_mels", "fmin", "fmax", "mean", "std")  # a sound run's log-mel front


def started_state(column: str, path: str) -> dict:
    """An earlier image run as a column's state: the size, channels and normalization its CNN
    was trained on (the column's images are read the same way) and the CNN's shape (`backbone`:
    the column's encoder is that network without its output layer, models/vision.ConvBackbone)."""
    spec, backbone = started_cnn(column, path, "images", lambda spec: spec.get("kind") == "image")
    channels, height, width = spec["shape"]
    return {"size": [height, width], "channels": channels, "mean": list(spec["mean"]), "std": list(spec["std"]),
            "backbone": backbone}


def started_cnn(column: str, path: str, what: str, fits) -> tuple[dict, dict]:
    """An earlier run's spec and its CNN's shape, refused unless it is a single CNN trained on
    `what` (`fits(spec)`: its spec says so)."""
    from scaletrain.rundir import RunDir  # torch: not for `scaletrain prepare`

    key = f"model.encoders.{column}.init_from"
    if not (Path(path) / "model.safetensors").is_file() or not (Path(path) / "config.yaml").is_file():
        raise ConfigError(f"{key} '{path}' is not a run directory; give the --out folder of an earlier "
                          f"`scaletrain train` on a folder of {what}")
    spec = RunDir(path).read_spec()
    model = (yaml.safe_load((Path(path) / "config.yaml").read_text(encoding="utf-8")) or {}).get("model") or {}
    if not fits(spec) or model.get("name") not in ("cnn", "resnet") or spec.get("members", 1) != 1:
        raise ConfigError(f"{key} '{path}' is not a single CNN trained on {what} (its model: {model.get('name')} on "
                          f"{spec.get('kind')} data); train one with `scaletrain train FOLDER --set model.name=cnn` "
                          "(or resnet) and give its --out")
    side = min(spec["shape"][1:])
    return spec, {"residual": model["name"] == "resnet", "width": model.get("width") or 16,
                  "depth": model.get("depth") or None, "side": side,
                  "norm": "group" if model.get("norm") == "group" else "batch"}


def started_sound(column: str, path: str) -> dict:
    """An earlier sound run as a sound column's state: the rate and log-mel front (its bands'
    statistics included) its CNN was trained on, and the CNN's shape (`backbone`)."""
    from scaletrain.rundir import RunDir  # torch: not for `scaletrain prepare`

    def has_front(spec: dict) -> bool:
        return list(spec.get("shape") or [0])[0] == 1 and set(FRONT) <= set(RunDir(path).read_preprocess())

    _, backbone = started_cnn(column, path, "sound clips", has_front)
    front = RunDir(path).read_preprocess()
    return {key: front[key] for key in FRONT} | {"backbone": backbone}
