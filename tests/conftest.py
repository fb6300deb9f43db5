import os

# Under pytest-xdist each worker owns one core, and so do the processes it starts: the code under
# test sizes its threads by the cores it may use, so two workers never fight over both cores.
if os.environ.get("PYTEST_XDIST_WORKER") and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_cores[int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw")) % len(_cores)]})

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by markers
def pytest_collection_modifyitems(items):
    for item in items:  # one Ray cluster at a time: a worker's `ray stop` at its end would take the other's down
        if "ray_head" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.serial)


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """A small table with every column role and a binary target that depends on them."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    flag = rng.choice(["yes", "no"], size=n)
    city = np.array([f"city{i}" for i in rng.integers(0, 40, size=n)])
    logit = 2 * x + (color == "red") * 1.5 - (flag == "yes") * 1.0
    frame = pd.DataFrame({
        "id": np.arange(n), "x": x, "color": color, "flag": flag, "city": city,
        "when": pd.date_range("2020-01-01", periods=n, freq="37h").astype(str),
        "constant": 1.0, "label": np.where(logit + rng.normal(scale=0.5, size=n) > 0, "pos", "neg"),
    })
    frame.loc[::17, "x"] = np.nan
    return frame


@pytest.fixture
def fast() -> dict:
    """Overrides that keep a test's training to a second or two."""
    return {"epochs": 5, "verbose": False}


@pytest.fixture
def killed_after_two_epochs(monkeypatch):
    """The factorization's checkpoint writer, patched to stop a fit (as a kill would) right after
    epoch 2 is saved; `.undo()` on what it returns restores it."""
    from scaletrain.models import factorization

    save = factorization._save

    def killed(folder, epoch, *state):
        save(folder, epoch, *state)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(factorization, "_save", killed)
    return monkeypatch


@pytest.fixture(scope="session")
def served_table(tmp_path_factory):
    """A table run (numbers with missing values, one-hot and embedded categories, a boolean)
    that the serving tests share: trained once per session."""
    import scaletrain
    from tests.test_export import mixed_table

    out = tmp_path_factory.mktemp("serve") / "table"
    scaletrain.fit(mixed_table(), "label", out=out, model="mlp", epochs=3, sets=["data.max_onehot=10"])
    return out


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A real Ray cluster of one node on loopback, as `ray start --head` makes it."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    pytest.importorskip("ray.tune")
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # a session of its own: every process of the cluster is in its process group
    start = subprocess.Popen([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    assert start.wait(120) == 0, start.stderr.read()
    os.environ["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    yield
    import signal

    import ray

    ray.shutdown()
    os.environ.pop("RAY_ADDRESS", None)
    os.killpg(start.pid, signal.SIGKILL)  # as `ray stop --force` does, without its 6 s of start and waiting


@pytest.fixture(scope="session")
def browser():
    """Headless chromium driven by Selenium (skipped, saying why, where they are not installed)."""
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    yield driver
    driver.quit()
