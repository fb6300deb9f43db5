"""Data-parallel training in real processes: torch.distributed's elastic launcher (as torchrun),
gloo on CPU, DDP and FSDP, two node launchers meeting at a TCP rendezvous (in network
namespaces where the machine allows), a worker killed
with SIGKILL and restarted, and Ray Train on a Ray cluster."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from scaletrain.data.batches import TensorBatches
from scaletrain.errors import ConfigError
from scaletrain.parallel import distributed
from tests import warm_cli

# Two ranks and their launcher on both cores, as before the suite ran on two workers: a rank
# has rarely aborted at its end ("terminate called without an active exception"; cause not found)
pytestmark = pytest.mark.serial

# 640 training rows = 10 global batches of 64: no partial batch, so one process and two
# ranks take exactly the same steps on exactly the same rows
EXACT = ["--set", "train.epochs=4", "--set", "model.name=mlp", "--set", "model.dropout=0",
         "--set", "train.batch_size=64", "--set", "train.early_stopping=0", "--set", "train.threads=1",
         "--set", "data.val_fraction=0.2"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    n = 1100
    x = rng.normal(size=(n, 6))
    y = np.where(x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)]).assign(y=y)
    frame.iloc[:800].to_csv(folder / "train.csv", index=False)
    frame.iloc[800:].to_csv(folder / "test.csv", index=False)
    return {"train": folder / "train.csv", "test": folder / "test.csv"}


def _scaletrain(*args) -> subprocess.CompletedProcess:
    return warm_cli.run(*args)  # the launcher; its ranks are fresh interpreters


def _history(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "history.csv")


@pytest.fixture(scope="module")
def one_process(tables, tmp_path_factory) -> Path:
    from tests.train.test_resume import train_here

    out = tmp_path_factory.mktemp("runs") / "one"  # the one process: this one (its own would only add imports)
    train_here(["train", str(tables["train"]), "--test", str(tables["test"]), "--target",
                "y", "--out", str(out), *EXACT, "--quiet"])
    return out


def test_ranks_split_every_global_batch_exactly():
    x = torch.arange(100).unsqueeze(1)
    whole = [b[0][0].flatten().tolist() for b in TensorBatches((x,), x[:, 0], 24, shuffle=True, seed=3).epoch(2)]
    ranks = [[b[0][0].flatten().tolist() for b in TensorBatches((x,), x[:, 0], 12, shuffle=True, seed=3,
                                                                 rank=r, world=2).epoch(2)] for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # the partial 5th global batch is dropped on every rank
    for step in range(4):
        assert ranks[0][step] + ranks[1][step] == whole[step]  # together: the one-process batch


def test_a_global_batch_that_does_not_divide_over_the_ranks_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=0, size=3))
    assert distributed.local_batch(96) == 32
    with pytest.raises(ConfigError, match="use 63 or 66"):
        distributed.local_batch(64)


def test_two_ranks_train_the_same_model_as_one_process(tables, one_process, tmp_path):
    out = tmp_path / "two"
    done = _scaletrain("train", tables["train"], "--test", tables["test"], "--target", "y", "--out", out,
                       "--nproc-per-node", "2", *EXACT, "--quiet")
    assert done.returncode == 0, done.stderr
    one, two = _history(one_process), _history(out)
    assert list(one["step"]) == list(two["step"])
    # same rows, same mean gradient: equal up to float summation order
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == json.loads((one_process / "metrics.json").read_text())["test"]["accuracy"]
    assert metrics["distributed"] == {"ranks": 2, "restarts": 0}
    assert "rank" not in done.stdout.lower() or "2 ranks" in done.stdout


def test_fsdp_under_torchrun_shards_the_model_and_trains_the_same(tables, one_process, tmp_path):
    out = tmp_path / "fsdp"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "scaletrain", "train", str(tables["train"]), "--test", str(tables["test"]),
                           "--target", "y", "--out", str(out), *EXACT, "--set", "train.fsdp=true",
                           # a tuned threshold predicts after training: on rank 0 alone (a shard's forward is refused)
                           "--set", "train.threshold_metric=f1_macro", "--quiet"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # an abort prints where each rank was
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(_history(out)["train_loss"], _history(one_process)["train_loss"], rtol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"] == json.loads((one_process / "metrics.json").read_text())["parameters"]
    assert any("FSDP over 2 ranks" in note for note in metrics["notes"]) and "threshold" in metrics
    assert "binary · mlp" in done.stdout  # under plain torchrun, rank 0 prints the summary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _network_namespaces() -> list[tuple[str, str]] | None:
    """Create two network namespaces joined by a veth pair (10.77.1.1 <-> 10.77.1.2); return
    (namespace, interface) for each, or None where the machine does not allow it (not root,
    no iproute2)."""
    tag = f"st{os.getpid() % 100000}"
    nodes = [(f"{tag}n0", f"{tag}a"), (f"{tag}n1", f"{tag}b")]

    def ip(*args) -> int:
        return subprocess.run(["ip", *args], capture_output=True, text=True).returncode

    if ip("netns", "add", nodes[0][0]):
        return None
    steps = [("netns", "add", nodes[1][0]),
             ("link", "add", nodes[0][1], "netns", nodes[0][0], "type", "veth", "peer", "name", nodes[1][1],
              "netns", nodes[1][0])]
    for i, (name, interface) in enumerate(nodes):
        steps += [("-n", name, "link", "set", "lo", "up"), ("-n", name, "addr", "add", f"10.77.1.{i + 1}/24", "dev",
                                                            interface), ("-n", name, "link", "set", interface, "up")]
    if any(ip(*step) for step in steps):
        _remove_namespaces([name for name, _ in nodes])
        return None
    return nodes


def _remove_namespaces(names: list[str]) -> None:
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_two_nodes_meet_at_a_tcp_rendezvous(tables, tmp_path):
    """Two node launchers, each in its own network namespace joined by a veth pair, meet at a
    c10d rendezvous over TCP; where namespaces are not allowed, both run on loopback."""
    out, port = tmp_path / "nodes", _free_port()
    namespaces = _network_namespaces()
    host = "10.77.1.1" if namespaces else "127.0.0.1"
    try:
        nodes = []
        for rank in range(2):
            prefix, env = [], dict(os.environ)
            if namespaces:  # the launcher and gloo would otherwise use the address of the machine's hostname
                prefix = ["ip", "netns", "exec", namespaces[rank][0]]
                env.update(GLOO_SOCKET_IFNAME=namespaces[rank][1], PET_LOCAL_ADDR=f"10.77.1.{rank + 1}")
            nodes.append(subprocess.Popen(
                [*prefix, sys.executable, "-m", "scaletrain", "train", str(tables["train"]), "--target", "y",
                 "--out", str(out), "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                 "--rdzv-endpoint", f"{host}:{port}", "--set", "train.epochs=2", "--set", "model.name=mlp",
                 "--set", "train.threads=1", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                env=env))
        errors = [node.communicate(timeout=180)[1] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
        if namespaces:
            _remove_namespaces([name for name, _ in namespaces])
    assert [node.returncode for node in nodes] == [0, 0], errors
    assert json.loads((out / "metrics.json").read_text())["distributed"]["ranks"] == 2


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _local_rank(pid: int) -> str | None:
    try:
        env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"LOCAL_RANK=")), None)


def test_a_worker_killed_mid_run_is_restarted_and_resumes(tables, tmp_path):
    out, log = tmp_path / "killed", tmp_path / "launcher.log"
    launcher = warm_cli.start(
        "train", tables["train"], "--target", "y", "--out", out, "--nproc-per-node", "2", "--max-restarts", "2",
        "--set", "train.epochs=30", "--set", "model.name=mlp", "--set", "train.early_stopping=0",
        "--set", "checkpoint.every_steps=5", "--set", "train.threads=1", "--quiet", stdout=log, stderr=warm_cli.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("step-*.safetensors")):
        time.sleep(0.1)
    victims = [pid for pid in _children(launcher.pid) if _local_rank(pid) == "1"]
    assert victims, "no worker of local rank 1 found"
    os.kill(victims[0], signal.SIGKILL)
    assert launcher.wait(timeout=300) == 0, log.read_text()[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distributed"]["restarts"] >= 1  # the launcher restarted the workers ...
    assert metrics["epochs"] == 30  # ... which resumed and finished every epoch
    assert len(_history(out)) == 30


def test_shards_are_divided_across_ranks(tables, tmp_path):
    shards = tmp_path / "shards"
    assert _scaletrain("prepare", tables["train"], "--out", shards, "--target", "y", "--quiet").returncode == 0
    out = tmp_path / "streamed"
    done = _scaletrain("train", shards, "--out", out, "--nproc-per-node", "2", "--set", "train.epochs=2",
                       "--set", "model.name=mlp", "--set", "train.batch_size=32", "--set", "train.threads=1",
                       "--set", "data.loader_workers=0", "--quiet")
    assert done.returncode == 0, done.stderr
    history = _history(out)
    train_rows = json.loads((shards / "manifest.json").read_text())["rows"]["train"]
    # each step takes 32 rows: 16 per rank, each rank reading only its own shards' row groups
    assert history["step"].iloc[0] <= train_rows // 32


def test_the_ray_backend_trains_on_a_ray_cluster(ray_head, tables, tmp_path):
    from scaletrain.api import config_from
    from scaletrain.parallel.ray_train import fit_on_ray

    out = tmp_path / "ray"
    config = config_from(None, ["train.epochs=2", "model.name=mlp", "train.threads=1"], "y")
    reported = fit_on_ray({"data": str(tables["train"]), "test": None, "out": str(out), "config": config.to_dict(),
                           "resume": False}, 2)
    assert reported["checkpoint"] and reported["metrics"]["epoch"] == 2  # checkpoints reported to Ray
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distributed"]["ranks"] == 2
