"""What a modality's preparation hands to training: encoded tensors, fitted state, the raw
validation and test data, notes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from scaletrain.data.sources import Source
from scaletrain.errors import DataError
from scaletrain.tasks import task_of

if TYPE_CHECKING:  # tensors are made where data is prepared: `scaletrain prepare` runs without torch
    import torch


@dataclass
class Prepared:
    """Everything training needs: encoded tensors, fitted state, raw val/test data, notes."""

    kind: str
    task: str
    preprocess: dict
    train_inputs: tuple[torch.Tensor, ...]
    train_y: torch.Tensor
    val_inputs: tuple[torch.Tensor, ...]
    val_y: torch.Tensor
    val_source: Source
    test_source: Source | None
    summary: dict
    notes: list[str] = field(default_factory=list)
    shard_url: str | None = None   # when set, training rows stream from this shard directory
    train_rows: int | None = None  # (train_inputs/train_y are then empty)
    train_class_counts: torch.Tensor | None = None
    measured: dict = field(default_factory=dict)  # what zero-config measured before training (metrics.json)

    @property
    def target(self) -> dict:
        """The fitted target state (classes, or a regression's scale, range and levels)."""
        return self.preprocess["target"]

    @property
    def n_classes(self) -> int:
        return len(self.target.get("classes", []))

    @property
    def n_levels(self) -> int:
        """The whole-number values a regression target spans (0: not such a target)."""
        return int(self.target.get("levels", 0))

    @property
    def scale_points(self) -> int:
        """n_levels where the training targets hold every one of them (a rating scale), else 0."""
        return self.n_levels if self.target.get("scale") else 0

    def note(self, text: str | None) -> None:
        """Record what the fit decided or found, for metrics.json, the report and the CLI: the
        one way notes are added once the data is prepared (none twice, none empty)."""
        if text and text not in self.notes:
            self.notes.append(text)

    @property
    def n_train(self) -> int:
        return self.train_rows if self.train_rows is not None else len(self.train_y)

    def class_counts(self) -> torch.Tensor | None:
        if not task_of(self.task).classifies:
            return None
        if self.train_class_counts is not None:
            return self.train_class_counts
        import torch

        return torch.bincount(self.train_y, minlength=self.n_classes)

    def rows_in_memory(self) -> tuple[torch.Tensor, ...]:
        """The training rows' inputs, or the validation rows' where training streams from shards."""
        return next((x for x in (self.train_inputs, self.val_inputs) if x and len(x[0])), ())

    def val_minority(self) -> int:
        """Validation rows of the rarest class (0 for regression)."""
        if not task_of(self.task).classifies or not len(self.val_y):
            return 0
        return int(np.bincount(self.val_y.numpy(), minlength=self.n_classes).min())

    def imbalance(self) -> float:
        counts = self.class_counts()
        return 1.0 if counts is None else float(counts.max() / counts.clamp(min=1).min())




def require_rows(name: str, n_train: int, n_val: int, val_fraction: float) -> None:
    """Refuse data too small to train and validate on, saying how much is needed. Without
    validation (val_fraction 0) one training row will do."""
    if val_fraction == 0 and n_train >= 1:
        return
    if n_train < 2 or n_val < 1:
        needed = max(4, int(np.ceil(1 / val_fraction)) + 2) if val_fraction else 1
        raise DataError(f"'{name}' has too few usable rows to train and validate ({n_train} train, {n_val} validation); "
                        f"give at least about {needed} labelled rows, or train on every row with "
                        "data.val_fraction=0 and data.test_fraction=0")
