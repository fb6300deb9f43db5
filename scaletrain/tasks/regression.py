"""Regression: one number per row, standardized for training, scored by R²."""
from scaletrain.tasks.base import REGRESSION_LOSSES, Task

REGRESSION = Task("regression", classifies=False, headline="r2", losses=REGRESSION_LOSSES,
                  boosting_objective="regression")
