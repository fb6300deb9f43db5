"""`make bench`: long-running figures, printed side by side with their references.

Prints, never asserts on time:
  1. zero-config small tables vs a well-set scikit-learn baseline (5 splits each);
  2. zero-config digits images (the `make run` job);
  3. zero-config Fashion-MNIST: test accuracy and wall time (goal ≥ 0.92 within 15 minutes);
  4. data at scale (bench/big_table.py): a 3 GB CSV table prepared into shards and streamed;
  3b. zero-config Fashion-MNIST with --time-limit 10m (goal ≥ 0.939);
  5–7. speed (bench/overhead.py): our loop vs a hand-written PyTorch loop, skorch on the same
     MLP, predict throughput vs a bare model(x) loop;
  8. CPU paths (bench/cpu_paths.py): channels_last, bf16 autocast, torch.compile per step;
  9. tune vs zero-config train within one time limit (bench/tune_bench.py): wall ÷ limit, test scores;
  10. data-parallel scaling efficiency, 1 and 2 ranks (bench/scaling.py);
  11. the panel (bench/panel.py): zero-config on 16 real tables it was not tuned on, against an
     L2 logistic regression / ridge and HistGradientBoosting on identical seeded splits;
  11b. the larger panel (bench/panel.py --panel large): 32 tables from the allowed R packages, a
     "choose" and a "report" half, against linear, HistGradientBoosting and LightGBM defaults,
     zero-config's networks alone beside it.
  12. free text (bench/text_bbc.py): zero-config on the BBC News articles against TF-IDF + LR.
  12b. the text panel (bench/text_panel.py): seven real corpora against TF-IDF + LR with C by CV.
  13. few labels (bench/text_few_labels.py): pretrain, then fine-tune on 2% of BBC News.
  14. pretraining speed (bench/pretrain_speed.py): tokens/s against the Hugging Face Trainer.
  15. compression (bench/compress_bench.py): digits and a Fashion-MNIST subset distilled, pruned,
     int8 — size, parameters, latency ratios and accuracy side by side in onnxruntime.
  16. serving under load (bench/serve_load.py): wrk at 1, 16, 64 connections against a bare
     onnxruntime loop; 100,000 requests with the server's RSS sampled.
  16b. a burst of maximum-size requests (bench/serve_burst.py): the server's peak RSS, /health's
     latency while they are computed, RSS 30 s after; valid requests beside a client sending bad ones.
  17. explaining (bench/explain_bench.py): explain on 1,000 rows vs shap's KernelExplainer.
  18. privacy (bench/privacy_bench.py): DP-SGD's epoch time as a ratio to the same model without
     it; a membership attack's AUC without privacy, at ε = 8 and ε = 1.
  19. scaling studies (bench/scale_bench.py): AER Fertility (254,654 rows) and Fashion-MNIST,
     the largest cell predicted by the law fitted without it; exponents with intervals.
  20. sizing (bench/size_probe_bench.py): zero-config Fashion-MNIST --time-limit 10m, the width
     from the scaling probe and from the epochs rule, one after the other.
  21. sound (bench/audio_bench.py): flite's spoken keywords, each voice held out in turn, and
     FluidR3's instruments (families with programs held out; 128 programs), against log-mel
     statistics + logistic regression.
  22. sequences (bench/sequence_bench.py): JapaneseVowels as Parquet with a column of vectors,
     zero-config against 1-NN (Euclidean on padded sequences, and DTW).
  23. recommendation (bench/ranking_bench.py): MovieLens-100K fully ranked, seen items excluded:
     zero-config `--task recommend` against popularity, EASE and implicit's ALS on its split.
  24. click-through (bench/ctr_bench.py): --task ctr on MovieLens-100K against HistGradientBoosting
     and a one-hot logistic regression, the same test rows.
  25. a streamed log (bench/recommend_scale.py): 20 M and 40 M generated interactions prepared into
     shards and trained as a recommender; peak RSS of each training process (goal ≤ 2 GiB, flat).
  26. fused inputs (bench/fused_bench.py): the clothing reviews' text + table benchmark split, rating
     R² and recommended AUC, zero-config on the texts, the table and both, against TF-IDF + Ridge/LR.
  27. fused combiners and column starts (bench/fused_columns_bench.py): concat / gated / attention on
     the generated shapes task; a small fused table whose image column starts from an earlier CNN.
  28. image columns from shards (bench/fused_shards_bench.py): generated 32×32 pictures beside a number,
     50,000 and 100,000 rows trained in memory and from `prepare`'s shards; peak RSS of each training.
  (bench/pretrain_scale.py, 1 + 2 GB corpora and ~30 min, is run by hand.)
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import audio_bench  # noqa: E402
import big_table  # noqa: E402
import compress_bench  # noqa: E402
import cpu_paths  # noqa: E402
import ctr_bench  # noqa: E402
import explain_bench  # noqa: E402
import fused_bench  # noqa: E402
import fused_columns_bench  # noqa: E402
import fused_shards_bench  # noqa: E402
import overhead  # noqa: E402
import panel  # noqa: E402
import pretrain_speed  # noqa: E402
import privacy_bench  # noqa: E402
import ranking_bench  # noqa: E402
import recommend_scale  # noqa: E402
import scale_bench  # noqa: E402
import scaling  # noqa: E402
import sequence_bench  # noqa: E402
import serve_burst  # noqa: E402
import serve_load  # noqa: E402
import size_probe_bench  # noqa: E402
import text_bbc  # noqa: E402
import text_few_labels  # noqa: E402
import text_panel  # noqa: E402
import tune_bench  # noqa: E402

import scaletrain  # noqa: E402
from scaletrain.datasets import write_digits_folder  # noqa: E402

FASHION = Path(os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def machine() -> str:
    import torch

    cpu = platform.machine()
    if Path("/proc/cpuinfo").is_file():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def small_tables() -> None:
    from test_baselines import CASES, compare

    print("\n1. zero-config vs scikit-learn baseline (mean of 5 stratified 75/25 splits)")
    print(f"   {'dataset':<14}{'metric':<10}{'scaletrain':>12}{'baseline':>10}{'ratio':>8}")
    for name, (_, metric) in CASES.items():
        ours, base = np.array([compare(name, seed) for seed in range(5)]).mean(axis=0)
        print(f"   {name:<14}{metric:<10}{ours:>12.4f}{base:>10.4f}{ours / base:>8.3f}")


def digits() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_digits_folder(Path(tmp) / "digits")
        started = time.perf_counter()
        run = scaletrain.fit(folder, out=Path(tmp) / "run")
        wall = time.perf_counter() - started
    print(f"\n2. digits images (1,797 8×8 PNGs), zero-config: test accuracy {run.metrics['test']['accuracy']:.4f}, "
          f"{run.metrics['epochs']} epochs, training {run.metrics['train_seconds']:.1f}s, wall {wall:.1f}s")


def fit_fashion(**overrides) -> tuple[dict, float]:
    """Return the metrics and wall seconds of a zero-config Fashion-MNIST fit."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = scaletrain.fit(FASHION, out=Path(tmp) / "run", **overrides)
        return run.metrics, time.perf_counter() - started


def fashion() -> None:
    if not FASHION.is_dir():
        print(f"\n3. Fashion-MNIST skipped: {FASHION} missing (apt-get install -y dataset-fashion-mnist)")
        return
    m, wall = fit_fashion(verbose=True)
    print(f"\n3. Fashion-MNIST zero-config ({m['model']}, {m['parameters']:,} parameters, {m['epochs']} epochs): "
          f"test accuracy {m['test']['accuracy']:.4f} (goal 0.92), wall {wall / 60:.1f} min (goal ≤ 15), "
          f"training {m['train_seconds'] / 60:.1f} min")


def fashion_timed(limit: str = "10m") -> None:
    """Issue 5's figure: zero-config with --time-limit 10m; the limit bounds the whole fit."""
    if FASHION.is_dir():
        m, wall = fit_fashion(time_limit=limit)
        print(f"\n3b. Fashion-MNIST zero-config --time-limit {limit}: test accuracy {m['test']['accuracy']:.4f} "
              f"(goal 0.939; Google AutoML Vision 0.939 after 24 h), {m['epochs']} epochs, wall {wall:.0f}s, "
              f"stopped by {m['stopped_by']}")


if __name__ == "__main__":
    print(f"scaletrain bench on {machine()}")
    small_tables()
    digits()
    fashion()
    fashion_timed()
    big_table.main([])
    overhead.loops()
    overhead.peer()
    overhead.predict_throughput()
    cpu_paths.main([])
    tune_bench.main([])
    scaling.main([])
    print("\n11. panel of real tables (bench/panel.py)")
    panel.main([])
    print("\n11b. the larger panel of real tables (bench/panel.py --panel large)")
    panel.main(["--panel", "large"])
    print("\n12. free text: BBC News (bench/text_bbc.py)")
    text_bbc.main(["--splits", "1"])
    print("\n12b. the text panel (bench/text_panel.py)")
    text_panel.main([])
    print("\n13. few labels: pretraining then fine-tuning on 2% of BBC News (bench/text_few_labels.py)")
    text_few_labels.main(["--pretrain", "12m"])
    print("\n14. pretraining speed against the Hugging Face Trainer (bench/pretrain_speed.py)")
    pretrain_speed.main([])
    print("\n15. compression: distilled, pruned, int8 (bench/compress_bench.py)")
    compress_bench.main([])
    print("\n16. serving under load (bench/serve_load.py)")
    serve_load.main([])
    print("\n16b. a burst of maximum-size requests: peak RSS, /health latency, RSS 30 s after (bench/serve_burst.py)")
    serve_burst.main(burst=1)
    serve_burst.main(burst=8)
    print("\n17. explaining: Integrated Gradients vs shap KernelExplainer (bench/explain_bench.py)")
    explain_bench.main([])
    print("\n18. privacy: DP-SGD throughput and a membership attack (bench/privacy_bench.py)")
    privacy_bench.main([])
    print("\n19. scaling studies: Fertility and Fashion-MNIST (bench/scale_bench.py)")
    scale_bench.main([])
    print("\n20. sizing: the scaling probe against the epochs rule, Fashion-MNIST 10 minutes (bench/size_probe_bench.py)")
    size_probe_bench.main([])
    print("\n21. sound: spoken keywords by held-out voice, instrument families by held-out program (bench/audio_bench.py)")
    audio_bench.main([])
    print("\n22. sequences: JapaneseVowels against 1-NN Euclidean and DTW (bench/sequence_bench.py)")
    sequence_bench.main([])
    print("\n23. recommendation: MovieLens-100K, zero-config against popularity, EASE and ALS, fully ranked "
          "(bench/ranking_bench.py)")
    ranking_bench.main([])
    print("\n24. click-through: MovieLens-100K ratings >= 4 as clicks, --task ctr against HistGradientBoosting and "
          "one-hot logistic regression (bench/ctr_bench.py)")
    ctr_bench.main([])
    print("\n25. a streamed log: 20 M and 40 M generated interactions, peak RSS of training (bench/recommend_scale.py)")
    recommend_scale.main([])
    print("\n26. fused inputs: clothing reviews, text + table against each alone and TF-IDF baselines "
          "(bench/fused_bench.py)")
    fused_bench.main([])
    print("\n27. fused combiners and per-column starts, generated shapes task (bench/fused_columns_bench.py)")
    fused_columns_bench.main()
    print("\n28. image columns from shards: 50,000 and 100,000 rows of 32x32 pictures, in memory and streamed, "
          "peak RSS of training (bench/fused_shards_bench.py)")
    fused_shards_bench.main([])
