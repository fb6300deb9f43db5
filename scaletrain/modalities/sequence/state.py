"""The schema of a sequence run's preprocess.json (checked before the run is loaded): the
sequence column, the steps read and numbers per step, their fitted statistics, and the other
number columns' imputation, clipping and scaling."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from scaletrain.data.state_schema import Finite, Scale, State, TargetState
from scaletrain.modalities.sequence.rows import MAX_FEATURES, MAX_STEPS


class ExtraState(State):
    name: str
    role: Literal["numeric", "boolean"]
    median: Finite
    lo: Finite
    hi: Finite
    center: Finite
    scale: Scale


class SequenceState(State):
    kind: Literal["sequence"]
    column: str
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)]
    features: Annotated[int, Field(ge=1, le=MAX_FEATURES)]
    mean: list[Finite]
    std: list[Scale]
    extras: list[ExtraState] = Field(default_factory=list, max_length=100_000)
    target: TargetState
    target_column: Optional[str] = None
