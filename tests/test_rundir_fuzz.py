"""Tampered and damaged run directories: every command that reads a run exits 0 or 2 with at
most three lines, never a traceback, within 30 s and 1 GiB (tests/rundir_fuzz.py runs the cases
in a process of its own; tests/rundir_mutations.py has the mutations)."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaletrain
from tests import warm_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = 90  # hypothesis draws, beside every (run, file, mutation) once with `info`: ~60 s on 2 cores


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    n = 240
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    frame = pd.DataFrame({"x": rng.normal(size=n), "color": rng.choice(["red", "green"], n),
                          "city": [f"c{i}" for i in rng.integers(0, 30, n)],
                          "note": [" ".join(rng.choice(words, 6)) + f" item {i}" for i in range(n)]})
    frame["y"] = np.where(frame.x + (frame.color == "red") > 0.3, "p", "n")
    frame.to_csv(root / "table.csv", index=False)
    scaletrain.fit(root / "table.csv", "y", out=root / "table_run", model="mlp", epochs=2, data__max_onehot=4)
    images = rng.integers(0, 255, (120, 8, 8, 1)).astype(np.uint8)
    np.savez(root / "images.npz", x=images, y=(images.mean(axis=(1, 2, 3)) > 127).astype(int))
    scaletrain.fit(root / "images.npz", out=root / "image_run", model="cnn", epochs=1)
    return root


def test_tampered_run_directories_exit_0_or_2_within_bounds(fuzz_root):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = warm_cli.run(fuzz_root, EXAMPLES, module="tests.rundir_fuzz", cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failures"] == [], "\n".join(result["failures"])
    assert result["cases"] >= 150
    assert result["slowest"] < 30
    assert result["peak_rss"] - result["baseline_rss"] < 2 ** 30  # no case allocated 1 GiB beyond the warm process


@pytest.mark.parametrize("path", ["../../outside.json", "/etc/hostname", "tokenizer.json/../../x"])
def test_a_tokenizer_path_out_of_the_run_is_never_read(fuzz_root, tmp_path, path):
    import shutil

    from scaletrain.errors import RunDirError

    run = tmp_path / "run"
    shutil.copytree(fuzz_root / "table_run", run)
    state = json.loads((run / "preprocess.json").read_text())
    state["text"]["tokenizer"] = path
    (run / "preprocess.json").write_text(json.dumps(state))
    with pytest.raises(RunDirError, match="text.tokenizer"):
        scaletrain.load(run)
