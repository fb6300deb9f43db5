"""Exact resume: a run killed with SIGKILL at a random step, then resumed, ends bit-identical."""
import errno
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import scaletrain
from scaletrain.errors import ConfigError
from tests import warm_cli

COMMON = ["--quiet", "--set", "checkpoint.every_steps=1", "--set", "checkpoint.keep=3"]


def command(data, out, *extra) -> list[str]:
    """The arguments of `scaletrain train` for a checkpointed run."""
    return ["train", str(data), "--out", str(out), *COMMON, *extra]


def checkpoint_steps(out) -> list[int]:
    return [int(p.name.split("-")[1]) for p in out.rglob("step-*.json")]


def train_here(args: list[str]) -> None:
    """`scaletrain ARGS` (as `command` builds them) run through the same CLI in this process: the
    uninterrupted reference and the resumed run need no process of their own; only the killed run does."""
    from typer.testing import CliRunner

    from scaletrain.cli import app

    done = CliRunner().invoke(app, [str(a) for a in args])
    assert done.exit_code == 0, done.output


def kill_at_step(args, out, step: int) -> None:
    """Start `scaletrain ARGS` in a process of its own and SIGKILL it once a checkpoint at `step`
    or later exists."""
    process = warm_cli.start(*args, stdout=warm_cli.DEVNULL, stderr=warm_cli.DEVNULL)
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        if max(checkpoint_steps(out), default=0) >= step:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def assert_same_weights(a, b):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert np.array_equal(wa[key].numpy(), wb[key].numpy()), key


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 4))
    frame = pd.DataFrame(x, columns=list("abcd")).assign(y=np.where(x[:, 0] - x[:, 1] > 0, "p", "n"))
    frame.to_csv(folder / "t.csv", index=False)
    return folder / "t.csv"


TABLE_ARGS = ["--target", "y", "--set", "model.name=mlp", "--set", "model.dropout=0.3",
              "--set", "train.epochs=6", "--set", "train.early_stopping=3"]


@pytest.fixture(scope="module")
def reference(table):
    """One uninterrupted run, shared by the kill seeds."""
    out = table.parent / "reference"
    train_here(command(table, out, *TABLE_ARGS))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(table, reference, tmp_path, seed):
    total = max(checkpoint_steps(reference))
    killed = tmp_path / "killed"
    kill_at_step(command(table, killed, *TABLE_ARGS), killed, random.Random(seed).randint(1, total - 2))
    train_here(command(table, killed, *TABLE_ARGS, "--resume"))
    assert_same_weights(reference, killed)
    assert (reference / "history.csv").read_text().splitlines()[0] == (killed / "history.csv").read_text().splitlines()[0]
    ref_hist, res_hist = pd.read_csv(reference / "history.csv"), pd.read_csv(killed / "history.csv")
    assert ref_hist.drop(columns="seconds").equals(res_hist.drop(columns="seconds"))


def test_image_run_with_augmentation_resumes_bit_identically(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "d.npz", x=digits.images[:400], y=digits.target[:400])
    args = ["--set", "train.epochs=3", "--set", "data.augment_erase=0.5", "--set", "model.width=8"]
    reference = tmp_path / "reference"
    train_here(command(tmp_path / "d.npz", reference, *args))
    killed = tmp_path / "killed"
    kill_at_step(command(tmp_path / "d.npz", killed, *args), killed, 9)
    train_here(command(tmp_path / "d.npz", killed, *args, "--resume"))
    assert_same_weights(reference, killed)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(table, tmp_path):
    out = tmp_path / "run"
    scaletrain.fit(table, "y", out=out, model="mlp", epochs=2, checkpoint__every_steps=1, checkpoint__keep=3)
    newest = sorted((out / "checkpoints").glob("step-*.safetensors"))[-1]
    newest.write_bytes(newest.read_bytes()[:-10] + b"0123456789")
    with pytest.warns(UserWarning, match="damaged"):
        scaletrain.fit(table, "y", out=out, model="mlp", epochs=2, checkpoint__every_steps=1,
                       checkpoint__keep=3, resume=True)


def test_resume_with_another_config_names_the_differing_keys(table, tmp_path):
    out = tmp_path / "run"
    scaletrain.fit(table, "y", out=out, model="mlp", epochs=1)
    with pytest.raises(ConfigError, match="train.lr"):
        scaletrain.fit(table, "y", out=out, model="mlp", epochs=1, lr=0.5, resume=True)


def test_resume_without_checkpoints_is_refused_unless_or_start(table, tmp_path):
    # issue 29: a resume with nothing to resume used to start from scratch without a word
    from scaletrain.errors import RunDirError

    with pytest.raises(RunDirError, match="no checkpoint to continue from"):
        scaletrain.fit(table, "y", out=tmp_path / "new", model="mlp", epochs=2, resume=True)
    run = scaletrain.fit(table, "y", out=tmp_path / "new", model="mlp", epochs=2, resume_or_start=True)
    assert run.metrics["epochs"] == 2


class _Bomb:
    """Unpickling this runs a command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_files_are_never_loaded(table, tmp_path):
    import pickle

    out = tmp_path / "run"
    scaletrain.fit(table, "y", out=out, model="mlp", epochs=1)
    marker = tmp_path / "executed"
    for name in ("model.pt", "model.pkl", "checkpoints/step-999999999-99999-999999.pt", "preprocess.pkl"):
        (out / name).write_bytes(pickle.dumps(_Bomb(marker)))
    run = scaletrain.load(out)
    run.predict(table)
    warm_cli.run("info", out, check=True)
    scaletrain.fit(table, "y", out=out, model="mlp", epochs=1, resume=True)
    assert not marker.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_failed_checkpoint_write_keeps_the_last_good_one(table, tmp_path, monkeypatch, code):
    """Disk full or permission denied at the 5th save: the 4th stays whole, the message says so,
    and a resume once the disk is fixed ends where an uninterrupted run ends."""
    import scaletrain.io
    from scaletrain.errors import RunDirError
    from scaletrain.train.checkpoint import newest_valid

    args = dict(model="mlp", epochs=3, seed=3, checkpoint__every_steps=1, checkpoint__keep=2)
    reference = scaletrain.fit(table, "y", out=tmp_path / "reference", **args)
    real_save, calls = scaletrain.io.save_file, []

    def failing_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 5:
            with open(filename, "wb") as fh:  # half a file, as a full disk leaves it
                fh.write(b"\0" * 100)
            raise OSError(code, os.strerror(code))
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(scaletrain.io, "save_file", failing_save)
    out = tmp_path / "run"
    with pytest.raises(RunDirError, match=f"{os.strerror(code)}.*last good checkpoint .*step-000000004.* untouched"):
        scaletrain.fit(table, "y", out=out, **args)
    folder = out / "checkpoints"
    assert sorted(p.name for p in folder.iterdir() if "step-000000005" in p.name or p.name.endswith(".tmp")) == []
    _, meta = newest_valid(folder)
    assert meta["step"] == 4
    monkeypatch.setattr(scaletrain.io, "save_file", real_save)
    resumed = scaletrain.fit(table, "y", out=out, resume=True, **args)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_grad_scaler_state_is_checkpointed(tmp_path):
    """fp16 loss scaling (CUDA) must resume with the scale it had, not the initial one."""
    from scaletrain.train.checkpoint import Checkpoint
    from scaletrain.train.loop import LoopSettings, TrainState

    def state():
        model = torch.nn.Linear(3, 2)
        return TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), LoopSettings(epochs=1, lr=0.1),
                          total_steps=10, scaler=torch.amp.GradScaler("cpu"))

    before = state()
    before.scaler.load_state_dict({**before.scaler.state_dict(), "scale": 1024.0, "_growth_tracker": 7})
    before.step = 3
    Checkpoint(tmp_path).save(before, epoch_done=False)
    after = state()
    Checkpoint(tmp_path, resume=True).on_train_begin(after)
    assert after.scaler.state_dict() == before.scaler.state_dict() and after.step == 3


def test_streamed_run_killed_mid_epoch_resumes_bit_identically(table, tmp_path):
    """Shards read by a loader worker: the checkpoint's data position puts the resumed stream
    exactly where the killed one stopped."""
    from scaletrain.modalities import prepare_shards

    shards = tmp_path / "shards"
    prepare_shards([str(table)], str(shards), target="y", chunk_rows=40, verbose=False)
    args = ["--set", "model.name=mlp", "--set", "train.epochs=3", "--set", "train.batch_size=16",
            "--set", "data.loader_workers=1"]
    reference = tmp_path / "reference"
    warm_cli.run(*command(shards, reference, *args), check=True)  # its loader worker: a process of its own
    killed = tmp_path / "killed"
    kill_at_step(command(shards, killed, *args), killed, 17)  # 14 steps an epoch: mid-epoch 2
    warm_cli.run(*command(shards, killed, *args, "--resume"), check=True)
    assert_same_weights(reference, killed)


def test_a_checkpoint_is_visible_only_with_its_sidecar(table, tmp_path, monkeypatch):
    """A kill between writing a checkpoint and its sidecar once left a checkpoint no checksum
    could verify: the tensors go under a partial name and are renamed into place last."""
    import scaletrain.rundir
    from scaletrain.rundir import CheckpointFolder

    args = dict(model="mlp", epochs=3, seed=3, checkpoint__every_steps=1, checkpoint__keep=2)
    real_replace, seen = os.replace, []

    def killed_at_the_rename(src, dst):
        if Path(dst).name.startswith("step-") and Path(dst).suffix == ".safetensors":  # a checkpoint put in place
            seen.append(dst)
            if len(seen) == 3:  # the process dies here: the sidecar is written, the tensors are not in place
                raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(scaletrain.rundir.os, "replace", killed_at_the_rename)
    with pytest.raises(KeyboardInterrupt):
        scaletrain.fit(table, "y", out=tmp_path / "run", **args)
    monkeypatch.setattr(scaletrain.rundir.os, "replace", real_replace)
    store = CheckpointFolder(tmp_path / "run" / "checkpoints")
    assert len(store.files()) == 2 and all(store.verifies(p) for p in store.files())
    assert seen[2].with_suffix(".json").exists() and not seen[2].exists()  # the orphan sidecar of the killed save
    resumed = scaletrain.fit(table, "y", out=tmp_path / "run", resume=True, **args)
    assert resumed.metrics["epochs"] == 3
    assert all(p.with_suffix(".safetensors").exists() for p in store.folder.glob("step-*.json"))
