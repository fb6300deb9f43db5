"""What a modality supplies: everything that would otherwise be an `if kind == ...` branch.

A modality knows how to recognize and read its sources, the facts about the data that the
recipe needs, its own recipe defaults, how its preprocessing is fitted and applied, the model
spec its builders take, its per-batch transform, and the columns `predict` writes. Code
outside `scaletrain/modalities/` asks the registry for the modality of a source, a prepared
data set or a run, and calls these methods; it never asks which modality it has.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from scaletrain.config import Config, DataConfig, ModelConfig, TrainConfig
from scaletrain.data.prepared import Prepared
from scaletrain.data.sources import Source

if TYPE_CHECKING:  # `scaletrain prepare` reaches the registry without torch (2 s a process)
    import torch

    from scaletrain.models.registry import ModelSpec


@dataclass
class DataFacts:
    """What the recipe knows about the data before choosing anything: what every modality has.
    A modality adds its own in a subclass (TableFacts, ImageFacts) beside it."""

    kind: str                 # the modality's name
    task: str
    n_train: int
    n_classes: int = 0
    levels: int = 0           # the points of a regression target's rating scale (Prepared.scale_points)
    imbalance: float = 1.0    # largest class count / smallest
    val_minority: int = 0     # validation rows of the rarest class
    streamed: bool = False    # training rows streamed from shards, not held in memory


@dataclass
class ExportParts:
    """What a modality gives the ONNX export: the torch layers between the graph's inputs and
    the model (`front`, traced with `example`, inputs named `names`), and an ONNX graph from raw
    input to those inputs where tensors cannot express it (string lookups), or None."""

    front: object
    example: tuple
    names: list[str]
    graph: object = None
    inputs: list[dict] | None = None  # the exported model's raw inputs, described for the model card


def steps_to_epochs(target_steps: int, steps_per_epoch: int, lo: int, hi: int) -> int:
    """Epochs that give about `target_steps` optimizer steps, within [lo, hi]."""
    return int(min(hi, max(lo, round(target_steps / max(steps_per_epoch, 1)))))


class Recipe:
    """A modality's zero-config defaults, filled in by the recipe where the config says auto."""

    model: str = "mlp"
    dropout: float = 0.0
    optimizer: str = "adamw"
    schedule: str = "cosine"
    label_smoothing: float = 0.0    # with cross-entropy
    early_stopping: int = 0         # patience in epochs; 0: none
    numeric_embedding: str = "none"  # tables' MLP: how numeric columns enter it (config model.numeric_embedding)

    def fit_data(self, data: DataConfig, facts: DataFacts) -> None:
        """Fix data settings the model depends on (an image size, say)."""

    def fit_model(self, model: ModelConfig, facts: DataFacts) -> None:
        """Fill the model settings that only this modality's facts decide (before the shared rules)."""

    def bf16_pays(self, model: ModelConfig) -> bool:
        """True where this model trains in bf16 under train.precision=auto on a CPU that computes it
        natively: only where that was measured faster at no cost in accuracy (BENCHMARKS.md)."""
        return False

    def batch_size(self, n_train: int) -> int:
        raise NotImplementedError

    def lr(self, optimizer: str, n_train: int) -> float:
        raise NotImplementedError

    def epochs(self, steps_per_epoch: int, time_limit: float | None, n_train: int) -> int:
        raise NotImplementedError


class Modality:
    """The interface; each modality module defines one subclass and one instance."""

    name: str = ""
    recipe: Recipe = Recipe()
    search_space: dict = {}          # tune's default space (config key -> choices or range)
    cross_validates: bool = False    # rows of an in-memory frame that `--cv` can fold
    parallel_trials: bool = False    # tune trials run well in single-threaded processes
    ends_on_time: bool = False       # time-limited runs train until the limit (no epoch count)
    scaling_widths: tuple = (8, 16, 32, 64, 128)  # `scale`'s default model sizes (the recipe's family)
    state_schema = None              # the pydantic model of its preprocess.json (data/state_schema.py)
    upload_type = ""                 # a served upload of one item: its media type's prefix ("" : rows of a table)
    upload_item = ""                 # what such an upload is, in words ("an image")
    column_encoders = False          # its columns' encoders can start from earlier runs (model.encoders)

    # ------------------------------------------------------------ reading
    def recognizes(self, path: Path) -> bool:
        """True if this modality reads the file or folder at `path`."""
        return False

    def read(self, path: Path, size: tuple[int, int] | None, channels: int | None) -> Source:
        raise NotImplementedError

    def from_array(self, x: np.ndarray, y, size, channels) -> Source | None:
        """A Source for an in-memory array, or None if the array is not this modality's."""
        return None

    def test_source(self, source: Source, test_data, load: Callable) -> Source:
        """Separate test data, read to match the training source; `load` is the registry's reader."""
        return load(test_data)

    def shards_from(self, sources: list[str]) -> bool:
        """True if `scaletrain prepare` of these sources makes this modality's shards."""
        return False

    def prepare_shards(self, sources: list[str], out: str, options: dict) -> dict:
        """Write the shard directory `out` (see modalities.prepare_shards); return the manifest."""
        raise NotImplementedError

    # ------------------------------------------------------------ training
    def prepare(self, source: Source, test: Source | None, data_cfg: DataConfig, seed: int) -> Prepared:
        """Prepared data; a plug-in whose `column_encoders` is set also takes `starts`: the
        columns whose encoders start from earlier runs (model.encoders.<column>.init_from)."""
        raise NotImplementedError

    def prepare_streamed(self, source: Source, manifest, data_cfg: DataConfig) -> Prepared:
        """Prepared data whose training rows stream from the shard directory `source.url`."""
        raise NotImplementedError

    def facts(self, prepared: Prepared) -> DataFacts:
        raise NotImplementedError

    def candidates(self, config: Config, facts: DataFacts) -> list[str]:
        """Model names zero-config trains and chooses between (the config's own if named)."""
        return [config.model.name]

    def model_spec(self, prepared: Prepared, n_out: int) -> ModelSpec:
        raise NotImplementedError

    def channels_last(self, train: TrainConfig) -> bool:
        """Whether the model and its inputs use the channels-last memory layout."""
        return False

    def train_transform(self, config: Config) -> Callable | None:
        """The per-batch transform of training inputs (augmentation), or None."""
        return None

    def stream_tensors(self, state: dict, where: str) -> Callable[[pd.DataFrame], tuple]:
        """frame of shard rows -> (model inputs, encoded targets), for a streamed split."""
        raise NotImplementedError

    # ------------------------------------------------------------ a trained run
    def read_settings(self, state: dict) -> tuple[tuple[int, int] | None, int | None]:
        """(size, channels) new input is brought to for the run's model; None: as it comes."""
        return None, None

    def as_run_input(self, source: Source) -> Source:
        """The part of a loaded source a trained run predicts on (an IDX folder: its test split)."""
        return source

    def encode(self, state: dict, source: Source) -> tuple[tuple[torch.Tensor, ...], object]:
        """(model inputs, raw labels or None) for a source, with the run's fitted state."""
        raise NotImplementedError

    def eval_inputs(self, batch: list[torch.Tensor], train: TrainConfig) -> list[torch.Tensor]:
        """A batch of encoded inputs as the model takes them at evaluation."""
        return batch

    def prediction_frame(self, source: Source) -> pd.DataFrame:
        """The frame `predict` adds its prediction columns to."""
        raise NotImplementedError

    def input_fields(self, state: dict) -> list[dict]:
        """What one input is made of, for a served model's schema and form: {name, type: number |
        boolean | category | text | date | image | audio | steps (a sequence column's), values (a
        category's known ones)}."""
        return []

    def background(self, prepared: Prepared, seed: int) -> dict[str, torch.Tensor] | None:
        """A sample of encoded training inputs that explanations are measured against (stored
        in the run as background.safetensors), or None where the modality needs none."""
        return None

    def check_background(self, background: dict, spec: ModelSpec) -> str | None:
        """What in a stored background contradicts the model's inputs (None: nothing)."""
        return None

    def check_run(self, state: dict, spec: ModelSpec, tokenizer_size: int | None) -> str | None:
        """What in a stored run's (schema-checked) state contradicts its model spec: an index the
        model's tables cannot hold, say (None: nothing)."""
        return None

    def probe_source(self, state: dict) -> Source:
        """One made-up input (every value missing, a blank image) that a loaded run must predict
        finitely: damage the schema cannot see (a wrong width, a zero scale) shows there."""
        raise NotImplementedError

    def upload_source(self, state: dict, data: bytes, name: str, limits) -> Source:
        """One uploaded item (a served request's body or file) read as the run reads its input;
        DataError if it cannot be, InputTooLarge (a subclass) past one of the server's `limits`."""
        raise NotImplementedError

    def input_warnings(self, state: dict, source: Source) -> list[dict]:
        """Per column, the values of new input the run's preprocessing has to guess at
        ({column, problem, count, rows, example}; data/input_check.py)."""
        return []

    def export_parts(self, state: dict, opset: int) -> ExportParts:
        """The pieces of an ONNX graph that takes this modality's raw input."""
        from scaletrain.errors import ExportError

        raise ExportError(f"{self.name} runs cannot be exported to ONNX yet")

    def onnx_feeds(self, state: dict, source: Source) -> dict[str, np.ndarray]:
        """The exported model's inputs (ExportParts.names) for loaded input, as a caller of the
        ONNX file gives them (export/onnx_export.onnx_inputs)."""
        raise NotImplementedError

    def record_feeds(self, state: dict, records: list[dict]) -> dict[str, np.ndarray] | None:
        """The exported model's inputs straight from validated JSON records (serve's hot path:
        no DataFrame), or None where this modality reads records only through a Source."""
        return None

    def report_sections(self, run, assessment) -> list[str]:
        """HTML sections of report.html that only this modality has."""
        return []
