"""Hyperparameter search: Optuna (or Ray Tune) over config keys, scored on validation rows."""
from scaletrain.tune.search import TuneResult, tune

__all__ = ["tune", "TuneResult"]
