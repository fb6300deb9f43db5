"""scikit-learn-style estimators: fit/predict/predict_proba/score inside pipelines and CV."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

_TARGET = "__target__"


class _ScaleEstimator(BaseEstimator):
    """Wraps `scaletrain.fit`; constructor arguments are stored untouched (sklearn's rule)."""

    _task = "auto"

    def __init__(self, model: str = "auto", epochs: int | None = None, lr: float | None = None,
                 batch_size: int | None = None, optimizer: str = "auto", weight_decay: float | None = None,
                 hidden: list[int] | None = None, dropout: float | None = None, seed: int = 0,
                 val_fraction: float = 0.15, config: dict | None = None):
        self.model = model
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.hidden = hidden
        self.dropout = dropout
        self.seed = seed
        self.val_fraction = val_fraction
        self.config = config

    def _frame(self, X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X.reset_index(drop=True)
        X = np.asarray(X)
        return pd.DataFrame(X.reshape(len(X), -1), columns=[f"x{i}" for i in range(X.reshape(len(X), -1).shape[1])])

    def fit(self, X, y):
        from scaletrain.api import fit

        frame = self._frame(X)
        frame[_TARGET] = np.asarray(y)
        overrides = {"model.name": self.model, "train.epochs": self.epochs, "train.lr": self.lr,
                     "train.batch_size": self.batch_size, "train.optimizer": self.optimizer,
                     "train.weight_decay": self.weight_decay, "model.hidden": self.hidden,
                     "model.dropout": self.dropout, "train.seed": self.seed,
                     "data.val_fraction": self.val_fraction, "data.test_fraction": 0.0, "data.task": self._task}
        self.run_ = fit(frame, _TARGET, out=None, config=self.config,
                        **{k.replace(".", "__"): v for k, v in overrides.items() if v is not None})
        self.n_features_in_ = frame.shape[1] - 1
        return self

    def _predictions(self, X) -> pd.DataFrame:
        return self.run_.predict(self._frame(X))


class ScaleClassifier(ClassifierMixin, _ScaleEstimator):
    """A scaletrain classifier with the scikit-learn interface."""

    _task = "classification"

    def fit(self, X, y):
        super().fit(X, y)
        self.classes_ = np.asarray(self.run_.classes)
        return self

    def predict(self, X) -> np.ndarray:
        return self._predictions(X)["prediction"].to_numpy().astype(self.classes_.dtype)

    def predict_proba(self, X) -> np.ndarray:
        frame = self._predictions(X)
        return frame[[f"proba_{c}" for c in self.run_.classes]].to_numpy()


class ScaleRegressor(RegressorMixin, _ScaleEstimator):
    """A scaletrain regressor with the scikit-learn interface."""

    _task = "regression"

    def predict(self, X) -> np.ndarray:
        return self._predictions(X)["prediction"].to_numpy(dtype=np.float64)
