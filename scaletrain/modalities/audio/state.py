"""The schema of a sound run's preprocess.json (checked before the run is loaded): the rate and
length clips are brought to, the STFT and mel settings, and each band's fitted statistics."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from scaletrain.data.state_schema import Finite, Scale, State, TargetState

MAX_SAMPLES = 48_000 * 600  # ten minutes at 48 kHz: the longest clip read (clips.MAX_CLIP_SECONDS)


class AudioState(State):
    kind: Literal["audio"]
    rate: Annotated[int, Field(ge=1000, le=384_000)]
    samples: Annotated[int, Field(gt=0, le=MAX_SAMPLES)]
    n_fft: Annotated[int, Field(ge=16, le=65_536)]
    hop: Annotated[int, Field(ge=1, le=65_536)]
    n_mels: Annotated[int, Field(ge=1, le=512)]
    fmin: Annotated[float, Field(ge=0)]
    fmax: Annotated[float, Field(gt=0)]
    mean: list[Finite]
    std: list[Scale]
    target: TargetState
    target_column: Optional[str] = None  # trained on a listing: the column of its labels
