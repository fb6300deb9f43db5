"""The schema of preprocess.json: what a run's fitted preprocessing must hold, checked before a
run is loaded (pydantic), so a damaged or tampered file is refused with the field that is
wrong instead of failing somewhere inside `predict`.

Every number that divides or scales is finite (and a scale positive): a NaN or a zero there
would make every prediction the same without a word. Each modality names its own state model
(`Modality.state_schema`); the target's is shared.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from scaletrain import tasks
from scaletrain.errors import RunDirError
from scaletrain.tasks.regression import MAX_LEVELS


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Scale = Annotated[float, AfterValidator(_finite), Field(gt=0)]
Label = Union[bool, int, float, str, None]
TASKS = tuple(tasks.TASKS)  # the tasks a run can hold


class State(BaseModel):
    # extra keys are kept (a newer writer may add some); the ones read are typed
    model_config = ConfigDict(extra="allow", strict=False)


class TargetState(State):
    task: Literal[TASKS]
    classes: Optional[list[Label]] = Field(default=None, max_length=1_000_000)
    mean: Optional[Finite] = None
    std: Optional[Scale] = None
    lo: Optional[Finite] = None  # regression: the training targets' range
    hi: Optional[Finite] = None
    levels: Optional[int] = Field(default=None, ge=2, le=MAX_LEVELS)  # a regression by level's outputs
    scale: Optional[bool] = None
    threshold: Optional[Finite] = None
    class_bias: Optional[list[Finite]] = None
    temperature: Optional[Scale] = None


class NumericState(State):
    name: str
    median: Finite
    lo: Finite
    hi: Finite
    center: Finite
    scale: Scale
    indicator: bool


class CategoryState(State):
    name: str
    categories: list[Label]


class TableColumns(State):
    numeric_raw: list[str]
    boolean: list[str]
    datetime: dict[str, list[str]]
    categorical: list[str]


class TextState(State):
    columns: list[str] = Field(min_length=1)
    length: int = Field(gt=0, le=1_000_000)
    vocab_size: int = Field(gt=0)
    idf: list[Finite]
    tokenizer: Literal["tokenizer.json"]  # a file of the run itself, never a path elsewhere


class BackboneState(State):  # an image column's encoder started from an earlier image run's CNN
    residual: bool
    width: int = Field(gt=0, le=1024)
    depth: int | None = Field(default=None, gt=0, le=6)
    side: int = Field(gt=0, le=1024)
    norm: Literal["batch", "group"]


class ImageColumnState(State):
    name: str
    kind: Literal["image"] = "image"
    size: list[Annotated[int, Field(gt=0, le=1024)]] = Field(min_length=2, max_length=2)
    channels: Literal[1, 3]
    mean: list[Finite] = Field(min_length=1, max_length=3)
    std: list[Scale] = Field(min_length=1, max_length=3)
    backbone: BackboneState | None = None


class SoundColumnState(State):  # a table's column of sound clips: its clips' length and log-mel front
    name: str
    kind: Literal["sound"]
    rate: int = Field(ge=1000, le=48_000)
    samples: int = Field(gt=0, le=48_000 * 10)  # at most 10 s a clip (data/sounds.LONGEST_KEPT_SECONDS)
    n_fft: int = Field(ge=16, le=8192)
    hop: int = Field(ge=1, le=8192)
    n_mels: int = Field(ge=1, le=256)
    fmin: float = Field(ge=0)
    fmax: float = Field(gt=0)
    mean: list[Finite] = Field(min_length=1, max_length=256)
    std: list[Scale] = Field(min_length=1, max_length=256)
    backbone: BackboneState | None = None  # its encoder started from an earlier sound run's CNN

    @model_validator(mode="after")
    def _one_statistic_per_band(self):
        if len(self.mean) != self.n_mels or len(self.std) != self.n_mels:
            raise ValueError(f"mean and std need one value per mel band ({self.n_mels})")
        return self


class TableState(State):
    kind: Literal["table"]
    columns: TableColumns
    numeric: list[NumericState]
    onehot: list[CategoryState]
    embed: list[CategoryState]
    dropped: dict
    target: TargetState
    target_column: Optional[str] = None
    text: Optional[TextState] = None
    images: list[Union[ImageColumnState, SoundColumnState]] = []  # the media columns: images, then sounds


class ImageState(State):
    kind: Literal["image"]
    size: list[Annotated[int, Field(gt=0, le=65_536)]] = Field(min_length=2, max_length=2)
    channels: Literal[1, 3, 4]
    mean: list[Finite]
    std: list[Scale]
    target: TargetState


def check_state(schema: type[BaseModel], state, where: str) -> None:
    """Refuse `state` (preprocess.json's content) unless it fits `schema`, naming the field."""
    if not isinstance(state, dict):
        raise RunDirError(f"{where}: expected a JSON object, got {type(state).__name__}")
    try:
        schema.model_validate(state)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RunDirError(f"{where}: field '{field}' {first['msg'].lower()} "
                          f"({exc.error_count()} problem(s)); the run directory is damaged") from None
