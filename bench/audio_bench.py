"""Zero-config on real sound, against the practitioner's simple baseline in the same run: each
clip's log-mel mean and deviation per band + logistic regression, on identical clips.

1. Spoken keywords (bench/audio_corpora.py: flite, 10 words × 5 voices × 3 rates × 4
   pitches), each voice held out in turn.
2. Instrument families (FluidR3_GM's 128 programs, 16 families of 8) with 2 programs of each
   family held out: the test instruments were never heard.
3. All 128 programs, a random stratified split of their notes.

Prints accuracies and seconds; asserts nothing.

    python bench/audio_bench.py [--parts keywords,families,programs] [--voices awb,slt] [--work DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audio_corpora import VOICES, WORDS, instruments, keywords  # noqa: E402

import scaletrain  # noqa: E402
from scaletrain.data.log_mel import LogMel  # noqa: E402
from scaletrain.modalities.audio.clips import read_clip_folder  # noqa: E402


def linked(work: Path, placed: list[tuple[Path, str, str]]) -> tuple[Path, Path]:
    """work/train/<label>/ and work/test/<label>/ holding links to the (clip, label, part) given."""
    for part in ("train", "test"):
        shutil.rmtree(work / part, ignore_errors=True)
    for clip, label, part in placed:
        (work / part / label).mkdir(parents=True, exist_ok=True)
        os.symlink(clip, work / part / label / f"{clip.parent.name}_{clip.name}")
    return work / "train", work / "test"


def split_by_voice(corpus: Path, held: str, work: Path) -> tuple[Path, Path]:
    """Train on four voices' keywords, test on the held-out voice's."""
    return linked(work, [(clip, word, "test" if voice == held else "train") for voice in VOICES for word in WORDS
                         for clip in sorted((corpus / voice / word).glob("*.wav"))])


def split_by_program(corpus: Path, work: Path) -> tuple[Path, Path]:
    """Families (program // 8) as labels; programs 2 and 5 of each family held out."""
    return linked(work, [(clip, f"family_{int(p.name) // 8:02d}", "test" if int(p.name) % 8 in (2, 5) else "train")
                         for p in sorted(corpus.glob("[0-9]*")) for clip in sorted(p.glob("*.wav"))])


def split_notes(corpus: Path, work: Path, seed: int = 0) -> tuple[Path, Path]:
    """Programs as labels; 3 of each program's 16 notes held out at random."""
    rng = np.random.default_rng(seed)
    placed = []
    for p in sorted(corpus.glob("[0-9]*")):
        clips = sorted(p.glob("*.wav"))
        held = set(rng.choice(len(clips), 3, replace=False).tolist())
        placed += [(clip, f"program_{p.name}", "test" if i in held else "train") for i, clip in enumerate(clips)]
    return linked(work, placed)


def compare(name: str, train: Path, test: Path, out: Path) -> tuple[float, float]:
    """Zero-config and the baseline on one split; prints one line."""
    start = time.perf_counter()
    run = scaletrain.fit(train, test=test, out=out, overwrite=True)
    seconds = time.perf_counter() - start
    ours, theirs = run.metrics["test"]["accuracy"], baseline(train, test)
    print(f"{name:<28}{ours:>12.3f}{theirs:>14.3f}{seconds:>9.0f}", flush=True)
    return ours, theirs


def summary_features(folder: Path, samples: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Each clip's log-mel mean and deviation per band (the baseline's features), its labels."""
    clips = read_clip_folder(folder, samples=samples)
    mel = LogMel(clips.rate).log_mel(torch.from_numpy(clips.waves)).numpy()
    return np.concatenate([mel.mean(axis=2), mel.std(axis=2)], axis=1), clips.labels, clips.waves.shape[1]


def baseline(train: Path, test: Path) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, samples = summary_features(train, None)
    tx, ty, _ = summary_features(test, samples)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    return float((model.predict(tx) == ty).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="keywords,families,programs")
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--work", default=None)
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="audio_bench_"))
    parts = args.parts.split(",")
    print(f"{'split':<28}{'zero-config':>12}{'log-mel + LR':>14}{'seconds':>9}")
    if "keywords" in parts:
        corpus = keywords(work / "keywords")
        if corpus is None:
            print("spoken keywords: skipped (flite is not installed: apt-get install flite)")
        else:
            scores = [compare(f"keywords, held out: {voice}", *split_by_voice(corpus, voice, work / "split"),
                              work / "runs" / voice) for voice in args.voices.split(",")]
            ours, theirs = np.mean(scores, axis=0)
            print(f"{'keywords, mean':<28}{ours:>12.3f}{theirs:>14.3f}   (chance {1 / len(WORDS):.3f})")
    corpus = instruments(work / "instruments") if {"families", "programs"} & set(parts) else None
    if corpus is None and {"families", "programs"} & set(parts):
        print("instruments: skipped (needs apt-get install fluid-soundfont-gm and pip install tinysoundfont)")
    elif corpus is not None:
        if "families" in parts:
            compare("families, programs held out", *split_by_program(corpus, work / "split"), work / "runs" / "families")
            print(f"{'':<28}(chance {1 / 16:.3f})")
        if "programs" in parts:
            compare("128 programs, notes held out", *split_notes(corpus, work / "split"), work / "runs" / "programs")


if __name__ == "__main__":
    main()
