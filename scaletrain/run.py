"""A trained run: config, model and fitted preprocessing; predicts from raw input; saves/loads.

Everything `predict` needs is in the run directory, in open formats: config.yaml,
model.safetensors (weights; the model's shape in its metadata), preprocess.json.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scaletrain.config import Config
from scaletrain.data.input_check import warning_line
from scaletrain.data.preprocess import encode_target
from scaletrain.data.sources import Source
from scaletrain.errors import DataError, RunDirError
from scaletrain.evaluate.metrics import compute_metrics
from scaletrain.modalities import modality, read_for_run
from scaletrain.models.registry import ModelSpec
from scaletrain.runcheck import load_checked
from scaletrain.rundir import RunDir
from scaletrain.tasks import task_of
from scaletrain.train import device

KEPT_OUTPUTS = 4  # input sets outputs_kept() remembers: validation and test rows, with views off and on


def _same_inputs(seen: tuple, inputs: tuple[torch.Tensor, ...]) -> bool:
    """Inputs equal to ones seen (pairs of a tensor and its version then), compared exactly: one
    pass over the memory, far less than a forward; a seen tensor changed in place since is not."""
    return len(seen) == len(inputs) and all(
        _version(x) == version and (x is y or (x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)))
        for (x, version), y in zip(seen, inputs))


def _version(x: torch.Tensor) -> int:
    """How often the tensor was changed in place; an inference-mode tensor (log-mel features)
    keeps no count, and outside inference mode it cannot be changed in place at all."""
    return -1 if x.is_inference() else x._version


@dataclass
class Assessment:
    """Metrics on labelled data, with truth and predictions (class indices or values)."""

    metrics: dict
    truth: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray | None
    source: Source | None = None     # what was assessed (the report's galleries show its rows)
    rows: np.ndarray | None = None   # which of its rows: the labelled ones


class Run:
    """A trained model with its preprocessing; `predict` takes raw rows or images."""

    def __init__(self, config: Config, model: torch.nn.Module, spec: ModelSpec, preprocess: dict,
                 metrics: dict | None = None, history: list[dict] | None = None, path: Path | None = None):
        self.config, self.model, self.spec, self.preprocess = config, model.eval(), spec, preprocess
        self.metrics, self.history, self.path = metrics or {}, history or [], path
        self.modality = modality(preprocess["kind"])
        self.assessment: Assessment | None = None  # on the test rows, once a fit has scored them
        self.background: dict[str, torch.Tensor] | None = None  # encoded training rows (explain/attributions.py)
        self._kept_outputs: list | None = None  # (inputs, views, outputs) while outputs_kept() is open

    @property
    def task(self) -> str:
        return self.preprocess["target"]["task"]

    @property
    def classes(self) -> list | None:
        return self.preprocess["target"].get("classes")

    # ------------------------------------------------------------ inputs
    def source(self, data, y=None) -> Source:
        """Return input data read the way the model was trained (image size, channels)."""
        return read_for_run(self.preprocess, data, y)

    def encode(self, source: Source) -> tuple[tuple[torch.Tensor, ...], object]:
        """Return (model inputs, raw labels or None) for a source."""
        return self.modality.encode(self.preprocess, source)

    # ------------------------------------------------------------ outputs
    @contextmanager
    def outputs_kept(self):
        """Within: outputs of inputs equal to ones already run (same view setting) are computed
        once. A fit's last steps each read the validation rows' outputs — test-time shifts, the
        temperature, the threshold, the validation metrics (from the re-encoded rows) — and the
        model does not change between them: a conv net's views over those rows ran 13 times,
        now 4 (Fashion-MNIST --time-limit 30s on 2 cores: ~3 s more for training)."""
        self._kept_outputs = []
        try:
            yield self
        finally:
            self._kept_outputs = None

    def outputs(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Return raw model outputs for encoded inputs, computed in eval batches."""
        if self._kept_outputs is None:
            return self._outputs(inputs)
        views = getattr(self.model, "shifted_views", None)
        for seen, seen_views, out in self._kept_outputs:
            if seen_views == views and _same_inputs(seen, inputs):
                return out.clone()
        out = self._outputs(inputs)
        seen = tuple((x, _version(x)) for x in inputs)
        self._kept_outputs = self._kept_outputs[-(KEPT_OUTPUTS - 1):] + [(seen, views, out.clone())]
        return out

    @torch.no_grad()
    def _outputs(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        t = self.config.train
        # the device and float type of the model's first float tensor (trees have buffers alone)
        weight = next(t for t in itertools.chain(self.model.parameters(), self.model.buffers()) if t.is_floating_point())
        self.model.eval()
        chunks = []
        for start in range(0, len(inputs[0]), t.eval_batch_size):
            batch = list(device.to_device([x[start:start + t.eval_batch_size] for x in inputs], weight.device))
            batch = device.as_model_dtype(self.modality.eval_inputs(batch, t), weight.dtype)
            # no autograd graph to build; on the CPU in fp32, as the exported graph computes, so predict and
            # the ONNX graph agree to 1e-5 whatever precision trained the weights
            precision = t.precision if weight.device.type == "cuda" else "fp32"
            with torch.inference_mode(), device.autocast(precision, weight.device.type):
                chunks.append(self.model(*batch).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros((0, self.spec.n_out))

    def predict_encoded(self, inputs) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (class indices or target values, probabilities or None)."""
        decisions, proba = task_of(self.task).decide(self.outputs(inputs), self.preprocess["target"],
                                                     self.config.train.loss)
        return decisions.numpy(), None if proba is None else proba.numpy()

    def input_warnings(self, source: Source, strict: bool = False) -> list[dict]:
        """What in `source` does not fit the trained schema, per column; with `strict`, refused."""
        findings = self.modality.input_warnings(self.preprocess, source)
        if strict and findings:
            raise DataError(f"'{source.name}' does not fit what the model was trained on (strict): "
                            + "; ".join(warning_line(f) for f in findings))
        return findings

    def predict(self, data, y=None, strict: bool = False) -> pd.DataFrame:
        """Return the input rows (or image names) with `prediction` and `proba_<class>` columns;
        `frame.attrs["warnings"]` says, per column, what did not fit the trained schema (with
        `strict`, such input is refused)."""
        source = self.source(data, y)
        findings = self.input_warnings(source, strict)
        inputs, _ = self.encode(source)
        values, proba = self.predict_encoded(inputs)
        frame = self.modality.prediction_frame(source)
        for name, column in task_of(self.task).output_columns(self.preprocess["target"], values, proba).items():
            frame[name] = column
        frame.attrs["warnings"] = [warning_line(f) for f in findings]
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
        if not task_of(self.task).classifies:
            truth = pd.to_numeric(pd.Series(labels)).to_numpy(np.float64)
            return Assessment(compute_metrics(self.task, truth, values), truth, values, None, source, np.flatnonzero(keep))
        truth = encode_target(self.preprocess["target"], labels, where=f"'{source.name}'").numpy()
        return Assessment(compute_metrics(self.task, truth, values, proba), truth, values, proba, source,
                          np.flatnonzero(keep))

    # ------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write config, weights, preprocessing, metrics and history into a run directory."""
        folder = RunDir(path)
        folder.write_model(self.config.to_dict(), self.model.state_dict(), asdict(self.spec), self.preprocess)
        if self.background is not None:
            folder.write_background(self.background)
        folder.write_results(self.metrics, self.history)
        self.path = folder.path
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """Return the Run stored in a run directory (no pickle: YAML, JSON and safetensors), every
        file checked first (runcheck.py) and a made-up input predicted finitely before it is
        handed out; a damaged or tampered directory is a RunDirError naming the file."""
        checked = load_checked(path)
        run = cls(checked.config.frozen(), checked.model, checked.spec, checked.preprocess, checked.metrics,
                  checked.history, Path(path))
        run.background = checked.background
        run.probe()
        return run

    def probe(self) -> None:
        """Predict one made-up input; outputs that are not finite mean damage (a zero scale, say)."""
        where = self.path or "the run"
        try:
            inputs, _ = self.encode(self.modality.probe_source(self.preprocess))
            out = self.outputs(inputs)
        except RunDirError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the damage made the model or its preprocessing raise
            raise RunDirError(f"{where}: its preprocessing and model do not work together "
                              f"({type(exc).__name__}: {str(exc)[:200]}); the run directory is damaged") from None
        if not torch.isfinite(out).all():
            raise RunDirError(f"{where}: a test input gives non-finite outputs (NaN or infinite scales or weights); "
                              "the run directory is damaged")
