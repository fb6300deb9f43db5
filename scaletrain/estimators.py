"""scikit-learn estimators: fit/predict/predict_proba/score inside pipelines and CV.

They pass scikit-learn's own conformance suite (`check_estimator`, tested). Input follows
scikit-learn's rules: arrays are numeric matrices, checked by `validate_data` (sparse,
complex, infinite, 1-d and empty input refused with scikit-learn's messages; NaN allowed:
missing values are imputed). DataFrames are taken as they are, any column types, as
`scaletrain.fit` takes them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted, column_or_1d, validate_data

from scaletrain.tasks import REGRESSION

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # imputed (median) with a missing indicator, as in `fit`
        return tags

    # ------------------------------------------------------------ input
    def _frame(self, X, reset: bool) -> pd.DataFrame:
        """X as the raw frame the run is fitted on (reset) or predicts, checked as scikit-learn checks it."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)  # feature names and count
            frame = X.reset_index(drop=True)
            frame.columns = [str(c) for c in frame.columns]
            if reset:
                self.columns_ = list(frame.columns)
            elif not hasattr(self, "feature_names_in_"):
                frame.columns = self.columns_  # fitted on an array: columns are positions
            return frame
        X = validate_data(self, X, reset=reset, accept_sparse=False, ensure_all_finite="allow-nan", dtype="numeric")
        if reset:
            self.columns_ = [f"x{i}" for i in range(X.shape[1])]
        return pd.DataFrame(X, columns=self.columns_)

    def _target(self, y, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"This {type(self).__name__} estimator requires y to be passed, but the target y is None.")
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, input_name="y"), warn=True)
        check_consistent_length(np.empty(n), y)
        return y

    def _val_fraction(self, n: int) -> float:
        """The validation share, or 0 (train on every row, no early stopping) where the data is
        too small to hold out a validation row and still train on two."""
        held = round(n * self.val_fraction)
        return self.val_fraction if held >= 1 and n - held >= 2 else 0.0

    # ------------------------------------------------------------ fit
    def fit(self, X, y):
        from scaletrain.api import fit

        frame = self._frame(X, reset=True)
        frame[_TARGET] = self._target(y, len(frame))
        overrides = {"model.name": self.model, "train.epochs": self.epochs, "train.lr": self.lr,
                     "train.batch_size": self.batch_size, "train.optimizer": self.optimizer,
                     "train.weight_decay": self.weight_decay, "model.hidden": self.hidden,
                     "model.dropout": self.dropout, "train.seed": self.seed,
                     "data.val_fraction": self._val_fraction(len(frame)), "data.test_fraction": 0.0,
                     "data.task": self._task}
        self.run_ = fit(frame, _TARGET, out=None, config=self.config,
                        **{k.replace(".", "__"): v for k, v in overrides.items() if v is not None})
        # float64 inference: a prediction must not depend on which other rows share its batch
        # (float32 matrix kernels round differently for different batch shapes)
        self.run_.model.double()
        return self

    def _predictions(self, X) -> pd.DataFrame:
        check_is_fitted(self)
        return self.run_.predict(self._frame(X, reset=False))


class ScaleClassifier(ClassifierMixin, _ScaleEstimator):
    """A scaletrain classifier with the scikit-learn interface."""

    _task = "classification"

    def _target(self, y, n: int) -> np.ndarray:
        y = super()._target(y, n)
        check_classification_targets(y)  # a continuous target is refused: "Unknown label type"
        if len(np.unique(y.astype(str))) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two classes in y; it holds one class "
                             f"({y[0]!r})")
        return y

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

    _task = REGRESSION.name

    def _target(self, y, n: int) -> np.ndarray:
        return super()._target(y, n).astype(np.float64)  # a non-numeric target fails here, naming y

    def predict(self, X) -> np.ndarray:
        return self._predictions(X)["prediction"].to_numpy(dtype=np.float64)
