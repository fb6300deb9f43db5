"""scaletrain: one command from raw tables, images or text to an evaluated, reusable neural model."""
from scaletrain.errors import ConfigError, DataError, RunDirError, ScaletrainError, TargetError
from scaletrain.version import VERSION as __version__

__all__ = ["__version__", "fit", "load", "pretrain", "cross_validate", "Run", "ScaleClassifier",
           "ScaleRegressor", "ScaletrainError", "ConfigError", "DataError", "TargetError", "RunDirError"]


def __getattr__(name):  # import torch-heavy parts on first use, so `scaletrain --help` is quick
    if name in ("fit", "load", "pretrain", "cross_validate"):  # tune, scale, audit: scaletrain.api.* (subpackages' names)
        from scaletrain import api
        return getattr(api, name)
    if name == "Run":
        from scaletrain.run import Run
        return Run
    if name in ("ScaleClassifier", "ScaleRegressor"):
        from scaletrain import estimators
        return getattr(estimators, name)
    raise AttributeError(name)
