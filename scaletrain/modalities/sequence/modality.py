"""Sequences: a JSONL or Parquet table (or a DataFrame) with one column of variable-length
sequences — a list of numbers per row (one feature per step) or a list of lists (a vector per
step) — and a target; the row's other number columns join as features.

Each step is standardized with the training steps' statistics and sequences are padded to one
length with their lengths kept (front.py); zero-config trains a bidirectional GRU and a 1-d
convolutional net over the steps (both mask the padding, so a sequence's prediction does not
depend on how far it was padded) and keeps the one better on validation rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaletrain.config import Config, DataConfig, ModelConfig
from scaletrain.data.prepared import Prepared
from scaletrain.data.preprocess import encode_target, fit_target
from scaletrain.data.schema import find_target
from scaletrain.data.sources import Source
from scaletrain.errors import DataError, TargetError
from scaletrain.modalities.base import DataFacts, ExportParts, Modality, Recipe, steps_to_epochs
from scaletrain.modalities.sequence.rows import holds_sequences, read_rows, sequence_columns, the_sequence_column
from scaletrain.modalities.sequence.state import SequenceState
from scaletrain.tasks import task_of

# torch is imported where tensors are made: `scaletrain prepare` reaches this module without it


@dataclass
class SequenceFacts(DataFacts):
    steps: int = 0
    features: int = 0


class SequenceRecipe(Recipe):
    """A bidirectional GRU (mean of its states over the steps), AdamW with a one-cycle schedule,
    label smoothing 0.1 and dropout 0.1, about 1,000 steps: small recurrent nets over short
    sequences reach their best within them (JapaneseVowels: BENCHMARKS.md)."""

    model, dropout, optimizer, schedule, label_smoothing, early_stopping = "rnn", 0.1, "adamw", "onecycle", 0.1, 0

    def fit_model(self, model: ModelConfig, facts: DataFacts) -> None:
        """Width 64 (a GRU's state, a convolution's channels): JapaneseVowels' test accuracy is the
        same as at the shared rule's 128 and the GRU trains 4x faster; conv1d three blocks."""
        model.width = model.width or 64
        if model.depth is None and model.name == "conv1d":
            model.depth = 3

    def batch_size(self, n_train: int) -> int:
        """64, or for few rows a power of two near an eighth of them (at least 8)."""
        return int(min(64, max(8, 2 ** math.floor(math.log2(max(n_train, 1) / 8)))))

    def lr(self, optimizer: str, n_train: int) -> float:
        return 0.1 if optimizer in ("sgd", "momentum", "nesterov") else 3e-3

    def epochs(self, steps_per_epoch: int, time_limit: float | None, n_train: int) -> int:
        return steps_to_epochs(1000, steps_per_epoch, 10, 300)


class Sequence(Modality):
    name = "sequence"
    state_schema = SequenceState
    recipe = SequenceRecipe()
    cross_validates = True  # rows of a frame, as a table's: `--cv` folds them
    scaling_widths = (8, 16, 32, 64, 128)
    search_space = {
        "model.name": ["rnn", "conv1d"],
        "train.lr": {"low": 5e-4, "high": 1e-2, "log": True, "grid": [1e-3, 3e-3]},
        "model.width": [32, 64, 128],
        "model.dropout": {"low": 0.0, "high": 0.3, "grid": [0.0, 0.1]},
    }

    # ------------------------------------------------------------ reading
    def recognizes(self, path: Path) -> bool:
        return holds_sequences(path)

    def read(self, path, size, channels) -> Source:
        path = Path(path)
        return Source(self.name, path.stem, frame=read_rows(path))

    def from_array(self, x, y, size, channels) -> Source | None:
        """A DataFrame with a column of lists (y, if given, becomes its `target` column)."""
        if not isinstance(x, pd.DataFrame) or not sequence_columns(x):
            return None
        frame = x.copy()
        if y is not None:
            if len(y) != len(frame):
                raise DataError(f"X has {len(frame)} rows but y has {len(y)}; give one label per row")
            frame["target"] = np.asarray(y)
        return Source(self.name, "dataframe", frame=frame)

    def shards_from(self, sources: list[str]) -> bool:
        return any(holds_sequences(Path(s)) for s in sources)

    def prepare_shards(self, sources: list[str], out: str, options: dict) -> dict:
        raise DataError(f"'{sources[0]}' holds a column of sequences: `prepare` does not shard sequences yet; train on "
                        "the file itself (its rows are read into memory)")

    # ------------------------------------------------------------ training
    def prepare(self, source: Source, test: Source | None, data_cfg: DataConfig, seed: int) -> Prepared:
        return prepare_sequences(source, test, data_cfg, seed)

    def facts(self, prepared: Prepared) -> DataFacts:
        state = prepared.preprocess
        return SequenceFacts(self.name, prepared.task, prepared.n_train, prepared.n_classes, levels=prepared.scale_points,
                             imbalance=prepared.imbalance(), val_minority=prepared.val_minority(),
                             steps=state["steps"], features=state["features"])

    def candidates(self, config: Config, facts: DataFacts) -> list[str]:
        """The recurrent and the convolutional encoder: which reads a kind of sequence better
        depends on it (order over long spans, or local shapes), and both train in seconds to
        minutes on what fits in memory."""
        return ["rnn", "conv1d"] if config.model.name == "auto" else [config.model.name]

    def model_spec(self, prepared: Prepared, n_out: int):
        from scaletrain.models.registry import ModelSpec

        state = prepared.preprocess
        return ModelSpec(self.name, n_out, n_dense=len(state["extras"]), shape=(state["steps"], state["features"]))

    # ------------------------------------------------------------ a trained run
    def encode(self, state: dict, source: Source):
        if source.frame is None:
            raise DataError(f"this model reads rows with a sequence column '{state['column']}'; give JSONL or Parquet "
                            "rows, or a DataFrame")
        from scaletrain.modalities.sequence.front import encoded

        target = state.get("target_column")
        labels = source.frame[target].to_numpy() if target in source.frame.columns else None
        return encoded(state, source.frame), labels

    def prediction_frame(self, source: Source) -> pd.DataFrame:
        return source.frame.copy()

    def check_run(self, state: dict, spec, tokenizer_size: int | None) -> str | None:
        if len(state["mean"]) != state["features"] or len(state["std"]) != state["features"]:
            return f"{state['features']} numbers per step but {len(state['mean'])} means and {len(state['std'])} deviations"
        if tuple(spec.shape) != (state["steps"], state["features"]) or spec.n_dense != len(state["extras"]):
            return (f"sequences of {(state['steps'], state['features'])} and {len(state['extras'])} other numbers, but "
                    f"the model takes {tuple(spec.shape)} and {spec.n_dense}")
        return None

    def probe_source(self, state: dict) -> Source:
        row = {state["column"]: [[0.0] * state["features"]]} | {c["name"]: float("nan") for c in state["extras"]}
        return Source(self.name, "probe", frame=pd.DataFrame({k: [v] for k, v in row.items()}))

    def input_fields(self, state: dict) -> list[dict]:
        return ([{"name": state["column"], "type": "steps", "steps": state["steps"], "features": state["features"]}]
                + [{"name": c["name"], "type": "number" if c["role"] == "numeric" else "boolean"}
                   for c in state["extras"]])

    def onnx_feeds(self, state: dict, source: Source) -> dict:
        from scaletrain.modalities.sequence.front import raw_inputs

        inputs, _ = raw_inputs(state, source.frame)
        return {name: x.numpy() for name, x in zip(("steps", "lengths", "numbers"), inputs)}

    def export_parts(self, state: dict, opset: int) -> ExportParts:
        import torch

        from scaletrain.modalities.sequence.front import SequenceFront

        steps, features, extras = state["steps"], state["features"], state["extras"]
        example = [torch.zeros((2, steps, features)), torch.tensor([1, steps])]
        names = ["steps", "lengths"]
        described = [
            {"name": "steps", "type": "float32", "shape": ["batch", steps, features],
             "what": f"column '{state['column']}': each row's first {steps} steps of {features} number(s), zeros after "
                     "its end (NaN for a missing number)"},
            {"name": "lengths", "type": "int64", "shape": ["batch"], "what": "each row's number of steps given"}]
        if extras:
            example.append(torch.zeros((2, len(extras))))
            names.append("numbers")
            described.append({"name": "numbers", "type": "float32", "shape": ["batch", len(extras)],
                              "what": f"columns {[c['name'] for c in extras]} as numbers (booleans as 0/1, NaN missing)"})
        return ExportParts(SequenceFront(state).eval(), tuple(example), names, None, described)


def prepare_sequences(source: Source, test: Source | None, data_cfg, seed: int) -> Prepared:
    """Prepared sequences: target found, split (stratified), the steps' and other columns'
    statistics fitted on the training rows."""
    from scaletrain.data.split import split_rows
    from scaletrain.modalities.sequence.front import encoded, extra_columns, fit_sequences

    frame, notes = source.frame, []
    target = find_target(frame, data_cfg.target, source.name)
    column = the_sequence_column(frame.drop(columns=[target]), source.name)
    absent = frame[target].isna()
    if absent.all():
        raise TargetError(f"target column '{target}' has no values; pick a column with labels")
    if absent.any():
        notes.append(f"{int(absent.sum())} rows with a missing target were left out")
        frame = frame[~absent]
    task = _task(frame[target], data_cfg.task, target)
    train, val, test_frame = split_rows(frame, target, task_of(task).classifies, test, data_cfg, seed, source.name)
    extras, dropped = extra_columns(train, {column, target}, data_cfg.columns or {})
    notes += [f"column '{c}' left out: {why}" for c, why in dropped.items()]
    state = fit_sequences(train, column, extras, data_cfg.clip_quantile)
    state["target"], state["target_column"] = fit_target(train[target], task), target
    if state["cut_in_training"]:
        notes.append(f"{state['cut_in_training']} training sequence(s) longer than {state['steps']} steps were cut")
    summary = {"task": task, "rows": len(frame), "sequence_column": column, "steps_read": state["steps"],
               "features_per_step": state["features"], "other_columns": list(extras),
               "train_rows": len(train), "val_rows": len(val), "test_rows": len(test_frame)}
    return Prepared(
        "sequence", task, state,
        encoded(state, train), encode_target(state["target"], train[target]),
        encoded(state, val), encode_target(state["target"], val[target]),
        Source("sequence", f"{source.name} (validation)", frame=val),
        Source("sequence", test.name if test else f"{source.name} (test)", frame=test_frame)
        if len(test_frame) else None,
        summary, notes)


def _task(y: pd.Series, task: str, column: str) -> str:
    from scaletrain.data.schema import check_target
    from scaletrain.tasks.infer import infer_task

    nested = y.map(lambda v: isinstance(v, (list, dict, np.ndarray)))
    if nested.any():
        raise TargetError(f"target column '{column}' holds a {type(y[nested].iloc[0]).__name__} in row "
                          f"{nested.idxmax()}: a target is one label or number per row (the sequence is an input)")
    task = infer_task(y, task)
    check_target(y, task, column)
    return task


SEQUENCE = Sequence()
