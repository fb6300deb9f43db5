"""A trained run: config, model and fitted preprocessing; predicts from raw input; saves/loads.

Everything `predict` needs is in the run directory, in open formats: config.yaml,
model.safetensors (weights; the model's shape in its metadata), preprocess.json.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from scaletrain.config import build_config, Config
from scaletrain.data.augment import to_float
from scaletrain.data.preprocess import decode_target, encode_target, transform_images, transform_table
from scaletrain.data.sources import Source, load_source
from scaletrain.errors import DataError, RunDirError
from scaletrain.evaluate.metrics import compute_metrics
from scaletrain.io import load_tensors, read_json, save_tensors, write_json, write_text, write_yaml
from scaletrain.models.registry import ModelSpec, build_model
from scaletrain.train.loop import autocast
from scaletrain.train.losses import outputs_to_proba

@dataclass
class Assessment:
    """Metrics on labelled data, with truth and predictions (class indices or values)."""

    metrics: dict
    truth: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray | None


RUN_FILES = ("config.yaml", "model.safetensors", "preprocess.json")


class Run:
    """A trained model with its preprocessing; `predict` takes raw rows or images."""

    def __init__(self, config: Config, model: torch.nn.Module, spec: ModelSpec, preprocess: dict,
                 metrics: dict | None = None, history: list[dict] | None = None, path: Path | None = None):
        self.config, self.model, self.spec, self.preprocess = config, model.eval(), spec, preprocess
        self.metrics, self.history, self.path = metrics or {}, history or [], path

    @property
    def task(self) -> str:
        return self.preprocess["target"]["task"]

    @property
    def classes(self) -> list | None:
        return self.preprocess["target"].get("classes")

    # ------------------------------------------------------------ inputs
    def source(self, data, y=None) -> Source:
        """Return input data read the way the model was trained (image size, channels)."""
        if self.preprocess["kind"] == "image":
            size = tuple(self.preprocess["size"])
            source = load_source(data, y, size=size, channels=self.preprocess["channels"])
            if source.test_images is not None:  # an MNIST-format folder: use its test split
                source = Source("image", source.name, images=source.test_images)
            return source
        return load_source(data, y)

    def encode(self, source: Source) -> tuple[tuple[torch.Tensor, ...], object]:
        """Return (model inputs, raw labels or None) for a source."""
        if self.preprocess["kind"] == "image":
            if source.kind != "image":
                raise DataError("this model was trained on images; give an image folder, file, IDX folder or .npz")
            return (transform_images(source.images.images),), source.images.labels
        if source.kind != "table":
            raise DataError("this model was trained on a table; give CSV, TSV, Parquet or JSONL rows")
        target = self.preprocess.get("target_column")
        frame = source.frame
        labels = frame[target].to_numpy() if target in frame.columns else None
        return transform_table(self.preprocess, frame, source.name).tensors(), labels

    # ------------------------------------------------------------ outputs
    @torch.no_grad()
    def outputs(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Return raw model outputs for encoded inputs, computed in eval batches."""
        t = self.config.train
        device = next(self.model.parameters()).device
        self.model.eval()
        chunks = []
        n = len(inputs[0])
        for start in range(0, n, t.eval_batch_size):
            batch = [x[start:start + t.eval_batch_size].to(device) for x in inputs]
            if self.preprocess["kind"] == "image":
                batch[0] = to_float(batch[0])
                if t.channels_last:
                    batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(t.precision, device.type):  # no autograd graph to build
                chunks.append(self.model(*batch).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros((0, self.spec.n_out))

    def predict_encoded(self, inputs) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (class indices or target values, probabilities or None)."""
        out = self.outputs(inputs)
        if self.task == "regression":
            return decode_target(self.preprocess["target"], out.squeeze(-1).double().numpy()), None
        proba = outputs_to_proba(out, self.task, self.config.train.loss).numpy()
        return proba.argmax(axis=1), proba

    def predict(self, data, y=None) -> pd.DataFrame:
        """Return the input rows (or image names) with `prediction` and `proba_<class>` columns."""
        source = self.source(data, y)
        inputs, _ = self.encode(source)
        values, proba = self.predict_encoded(inputs)
        frame = (source.frame.copy() if source.kind == "table"
                 else pd.DataFrame({"image": source.images.names}))
        if self.task == "regression":
            frame["prediction"] = values
        else:
            frame["prediction"] = decode_target(self.preprocess["target"], values)
            for i, name in enumerate(self.classes):
                frame[f"proba_{name}"] = proba[:, i]
        return frame

    def evaluate(self, data, y=None) -> dict:
        """Return the task's metrics on labelled raw data."""
        return self.assess(data, y).metrics

    def assess(self, data, y=None) -> "Assessment":
        """Return metrics plus the true and predicted values behind them (for reports)."""
        source = self.source(data, y)
        inputs, labels = self.encode(source)
        if labels is None:
            what = self.preprocess.get("target_column") or "class labels (subfolders)"
            raise DataError(f"'{source.name}' has no {what}; evaluate needs labelled data")
        keep = ~pd.isna(pd.Series(labels)).to_numpy()
        inputs = tuple(x[torch.from_numpy(keep)] for x in inputs)
        values, proba = self.predict_encoded(inputs)
        labels = np.asarray(labels)[keep]
        if self.task == "regression":
            truth = pd.to_numeric(pd.Series(labels)).to_numpy(np.float64)
            return Assessment(compute_metrics(self.task, truth, values), truth, values, None)
        truth = encode_target(self.preprocess["target"], labels, where=f"'{source.name}'").numpy()
        return Assessment(compute_metrics(self.task, truth, values, proba), truth, values, proba)

    # ------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write config, weights and preprocessing into a run directory; return its path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_yaml(path / "config.yaml", self.config.to_dict())
        save_tensors(path / "model.safetensors", self.model.state_dict(),
                     metadata={"model_spec": json.dumps(asdict(self.spec))})
        write_json(path / "preprocess.json", self.preprocess)
        if self.metrics:
            write_json(path / "metrics.json", self.metrics)
        if self.history:
            write_text(path / "history.csv", pd.DataFrame(self.history).to_csv(index=False))
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """Return the Run stored in a run directory (no pickle: YAML, JSON and safetensors)."""
        path = Path(path)
        if not path.is_dir():
            raise RunDirError(f"run directory '{path}' does not exist")
        missing = [f for f in RUN_FILES if not (path / f).is_file()]
        if missing:
            raise RunDirError(f"'{path}' is not a complete run directory: {', '.join(missing)} missing")
        try:
            tree = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RunDirError(f"'{path / 'config.yaml'}' is damaged: {exc}") from None
        config = build_config(tree)
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), "pt") as fh:
            spec = ModelSpec(**json.loads(fh.metadata()["model_spec"]))
        model = build_model(spec, config.model)
        try:
            model.load_state_dict(load_tensors(path / "model.safetensors"))
        except RuntimeError as exc:
            raise RunDirError(f"the weights in '{path / 'model.safetensors'}' do not fit the model its config "
                              f"describes (written by another scaletrain version?): {str(exc).splitlines()[1].strip()}") from None
        metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
        history = pd.read_csv(path / "history.csv").to_dict("records") if (path / "history.csv").is_file() else []
        return cls(config, model, spec, read_json(path / "preprocess.json"), metrics, history, path)
