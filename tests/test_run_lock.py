"""One writer per run directory, nothing followed out of it, no run lost or mixed: a second
`train` on the same --out exits 2 naming the holder, a finished run is refused unless --resume
or --overwrite (which replaces it whole), symlinks in a run are refused, and a full disk stops
training with one line naming the last good checkpoint."""
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scaletrain
from scaletrain.errors import RunDirError
from tests import warm_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 6)), columns=[f"f{i}" for i in range(6)])
    frame["y"] = (frame.f0 + frame.f1 > 0).map({True: "a", False: "b"})
    path = tmp_path_factory.mktemp("lock") / "t.csv"
    frame.to_csv(path, index=False)
    return path


def cli(*args: str) -> warm_cli.Warm:
    return warm_cli.start(*args, cwd=ROOT)


def test_a_second_writer_exits_2_naming_the_holder(table, tmp_path):
    out = tmp_path / "run"
    first = cli("train", str(table), "--target", "y", "--out", str(out), "--quiet", "--set", "model.name=mlp",
                "--set", "train.epochs=400", "--set", "train.early_stopping=0")
    for _ in range(300):  # until the first holds the lock
        if (out / ".lock").exists() and (out / ".lock").read_text().strip():
            break
        time.sleep(0.1)
    second = cli("train", str(table), "--target", "y", "--out", str(out), "--quiet", "--set", "model.name=linear")
    _, err = second.communicate(timeout=120)
    holder = (out / ".lock").read_text().strip()
    first.kill()
    first.wait()
    assert second.returncode == 2
    assert f"being written by process {first.pid}" in err and holder == str(first.pid)
    assert len(err.strip().splitlines()) == 1


def test_a_finished_run_is_refused_unless_resumed_or_overwritten(table, tmp_path):
    out = tmp_path / "run"
    first = scaletrain.fit(table, "y", out=out, model="mlp", epochs=2)
    with pytest.raises(RunDirError, match="already holds a run; give --resume .* --overwrite"):
        scaletrain.fit(table, "y", out=out, model="linear", epochs=2)
    assert scaletrain.load(out).config.model.name == "mlp"  # nothing of the first run was touched
    (out / "checkpoints" / "stale-marker").write_text("from the old run")
    second = scaletrain.fit(table, "y", out=out, model="linear", epochs=2, overwrite=True)
    assert second.config.model.name == "linear" and first.config.model.name == "mlp"
    assert not (out / "checkpoints" / "stale-marker").exists()  # replaced whole, never mixed
    assert all("linear" in str(p) or p.parent.name == "checkpoints" for p in (out / "checkpoints").rglob("*.safetensors"))


def test_symlinks_in_a_run_directory_are_refused_and_their_targets_untouched(table, tmp_path):
    out = tmp_path / "run"
    scaletrain.fit(table, "y", out=out, model="mlp", epochs=2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("a.safetensors", "b.json", "c.txt"):
        (elsewhere / name).write_text("keep me")
    import shutil

    shutil.rmtree(out / "checkpoints")
    os.symlink(elsewhere, out / "checkpoints")
    with pytest.raises(RunDirError, match="symbolic link"):
        scaletrain.fit(table, "y", out=out, model="mlp", epochs=2, resume=True)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["a.safetensors", "b.json", "c.txt"]
    with pytest.raises(RunDirError, match="symbolic link"):
        scaletrain.load(out)


def test_a_full_disk_stops_training_with_one_line_naming_the_last_good_checkpoint(table, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()[:100]})")
    try:
        out = disk / "run"
        process = cli("train", str(table), "--target", "y", "--out", str(out), "--quiet", "--set", "model.name=mlp",
                      "--set", "model.hidden=[256,256]", "--set", "train.epochs=50", "--set", "checkpoint.every_steps=1",
                      "--set", "checkpoint.keep=2")
        _, err = process.communicate(timeout=300)
        assert process.returncode == 2, err[-2000:]
        lines = [line for line in err.strip().splitlines() if not line.startswith("warning")]
        assert len(lines) == 1 and "No space left on device" in lines[0] and "untouched" in lines[0], err[-2000:]
        from scaletrain.rundir import CheckpointFolder

        store = CheckpointFolder(out / "checkpoints")
        named = lines[0].split("last good checkpoint '")[1].split("'")[0]
        assert Path(named).exists() and store.verifies(Path(named))  # the one it names is whole
        assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_overwrite_never_clears_a_folder_that_holds_no_run(table, tmp_path):
    (tmp_path / "mine.txt").write_text("a user's own file")
    scaletrain.fit(table, "y", out=tmp_path, model="linear", epochs=2, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "a user's own file"
