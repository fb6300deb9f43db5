"""`prepare --backend ray`: the files spread over a running Ray cluster's workers give the same
shards (rows) and the same statistics as a local prepare of the same files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest


def _prepare(*args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "scaletrain", "prepare", *map(str, args), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _rows(folder: Path, split: str) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in sorted(folder.rglob(f"*{split}*.parquet"))]
    return pd.concat(frames, ignore_index=True).sort_values(["x0", "x1"]).reset_index(drop=True)


def _without_times(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in ("seconds", "created")}


def _close(a, b, path: str = "") -> None:
    """Equal plain data, numbers within float tolerance (a merge sums in another order)."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def table_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray_tables")
    rng = np.random.default_rng(3)
    for i in range(4):  # several files, so that both workers get some
        n = 300 + 50 * i
        pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.exponential(size=n),
                      "city": rng.choice(["a", "b", "c", None], size=n),
                      "y": rng.choice(["yes", "no"], size=n)}).to_csv(folder / f"part{i}.csv", index=False)
    return folder


def test_a_ray_prepare_writes_the_rows_and_statistics_of_a_local_one(ray_head, table_files, tmp_path):
    _prepare(table_files, "--out", tmp_path / "local", "--target", "y")
    _prepare(table_files, "--out", tmp_path / "ray", "--target", "y", "--backend", "ray")
    local, ray = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("local", "ray"))
    assert ray["rows"] == local["rows"] and sum(local["rows"].values()) == 1500
    _close(_without_times(ray), _without_times(local))
    for split in ("train", "val", "test"):
        pd.testing.assert_frame_equal(_rows(tmp_path / "ray", split), _rows(tmp_path / "local", split))


@pytest.mark.slow  # ~15 s of spawned processes and Ray workers: in `make bench`
def test_a_ray_prepare_of_a_corpus_writes_the_blocks_of_a_local_one(ray_head, tmp_path):
    words = np.array("the market rose as the team won a vote on the new film and its music".split())
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"c{i}.txt").write_text("\n".join(" ".join(rng.choice(words, size=40)) for _ in range(200)))
    _prepare(corpus, "--corpus", "--out", tmp_path / "local", "--set", "data.block_size=32")
    _prepare(corpus, "--corpus", "--out", tmp_path / "ray", "--set", "data.block_size=32", "--backend", "ray",
             "--set", f"data.tokenizer={tmp_path / 'local' / 'tokenizer.json'}")  # the same pieces, given
    local, ray = (json.loads((tmp_path / name / "corpus.json").read_text()) for name in ("local", "ray"))
    assert ray == local and local["documents"] == 600 and len(local["shards"]) == 3
    for shard in local["shards"]:
        assert np.array_equal(np.load(tmp_path / "ray" / shard["file"]), np.load(tmp_path / "local" / shard["file"]))


def test_prepare_names_the_backends_it_has(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scaletrain", "prepare", str(tmp_path), "--out", str(tmp_path / "o"),
                           "--backend", "spark"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "choose local or ray" in done.stderr and "Traceback" not in done.stderr
