"""Zero-config on a panel of real labelled corpora (bench/text_corpora.py) against the baseline a
practitioner writes for text: TF-IDF of words and word pairs (sublinear tf, min_df 2) + an L2
logistic regression with C chosen by 3-fold cross-validation, on identical seeded stratified
splits (25% test; three splits under 5,000 texts, one above). The score is macro F1; "spread"
is the standard deviation over the splits. Corpora marked "report" were never used to choose
the recipe.

`python bench/text_panel.py [--only NAME ...] [--set KEY=VALUE ...] [--rows N] [--json FILE]`
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import pandas as pd
from panel import chosen, finish
from text_corpora import CORPORA

SMALL = 5000
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)


def baseline(train: pd.DataFrame):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(max_iter=3000))
    search = GridSearchCV(pipe, {"logisticregression__C": C_GRID}, cv=3, scoring="f1_macro", n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return search.fit(train["text"], train["label"])


def one_split(frame: pd.DataFrame, seed: int, sets: list[str], time_limit: str | None) -> dict:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import train_test_split

    import scaletrain

    train, test = train_test_split(frame, test_size=0.25, random_state=seed, stratify=frame["label"])
    started = time.perf_counter()
    limit = {"time_limit": time_limit} if time_limit else {}
    run = scaletrain.fit(train, "label", test=test, out=None, seed=seed, sets=sets, **limit)
    predicted = run.predict(test.drop(columns="label"))["prediction"].astype(test["label"].dtype)
    ours = (f1_score(test["label"], predicted, average="macro"), time.perf_counter() - started, chosen(run.metrics))
    started = time.perf_counter()
    fitted = baseline(train)
    theirs = (f1_score(test["label"], fitted.predict(test["text"]), average="macro"), time.perf_counter() - started,
              f"C={fitted.best_params_['logisticregression__C']:g}")
    return {"zero-config": ours, "tfidf_lr": theirs, "notes": run.metrics.get("notes", [])}


def evaluate(name: str, sets: list[str], rows: int | None, time_limit: str | None) -> dict:
    load, role, why = CORPORA[name]
    frame = load()
    if rows and len(frame) > rows:
        frame = frame.sample(n=rows, random_state=0).reset_index(drop=True)
    splits = [one_split(frame, seed, sets, time_limit) for seed in range(3 if len(frame) < SMALL else 1)]
    result = {"corpus": name, "role": role, "why": why, "rows": len(frame), "classes": int(frame["label"].nunique()),
              "splits": len(splits), "notes": splits[0]["notes"]}
    for key in ("zero-config", "tfidf_lr"):
        scores = [s[key][0] for s in splits]
        result[key] = {"score": statistics.mean(scores), "spread": statistics.pstdev(scores) if len(scores) > 1 else 0.0,
                       "seconds": statistics.mean(s[key][1] for s in splits), "model": sorted({s[key][2] for s in splits})}
    return result


def summary(results: list[dict]) -> str:
    lines = []
    for role in ("choose", "report"):
        half = [r for r in results if r["role"] == role]
        if not half:
            continue
        gaps = [r["zero-config"]["score"] - r["tfidf_lr"]["score"] for r in half]
        worse = [r["corpus"] for r, g in zip(half, gaps)
                 if g < -max(r["zero-config"]["spread"], r["tfidf_lr"]["spread"], 0.005)]
        lines.append(f"{role} corpora: mean gap {100 * statistics.mean(gaps):+.2f} points over TF-IDF + LR; "
                     f"worse beyond the spread on: {', '.join(worse) or 'none'}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="corpus names to run")
    parser.add_argument("--set", action="append", default=[], help="a config override for zero-config")
    parser.add_argument("--rows", type=int, help="a seeded sample of each corpus (default: all of it)")
    parser.add_argument("--time-limit", help="zero-config's --time-limit")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    print(f"{'corpus':22} {'role':>6} {'rows':>6} {'cls':>4}  {'zero-config':>13} {'tfidf+LR':>13}  "
          f"{'seconds':>11}  model")
    results = []
    for name in [n for n in CORPORA if not args.only or n in args.only]:
        r = evaluate(name, args.set, args.rows, args.time_limit)
        results.append(r)
        cells = " ".join(f"{r[k]['score']:.4f}±{r[k]['spread']:.3f}".rjust(13) for k in ("zero-config", "tfidf_lr"))
        seconds = f"{r['zero-config']['seconds']:.0f}/{r['tfidf_lr']['seconds']:.0f}"
        print(f"{name:22} {r['role']:>6} {r['rows']:>6} {r['classes']:>4}  {cells}  {seconds:>11}  "
              f"{','.join(r['zero-config']['model'])} ({','.join(r['tfidf_lr']['model'])})", flush=True)
    finish(summary(results), results, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
