"""`serve` from the run's exported ONNX graph: the answers and warnings of `predict`, through the
hot path and through FastAPI; the graph kept in the run and rebuilt when it no longer matches,
refused when it predicts otherwise; torch where a run has no ONNX form; several workers."""
import json
import logging
import os
import signal
import socket
import time
import urllib.request

import numpy as np
import onnx
import pandas as pd
from fastapi.testclient import TestClient
from onnx import numpy_helper

import scaletrain
from scaletrain.serve import load_app
from scaletrain.serve.graph import GRAPH, cached_graph
from scaletrain.serve.hot_path import HOT_BYTES
from tests import warm_cli
from tests.test_export import mixed_table

ODD_ROWS = [  # each kind of value the graph must read as predict reads it
    {"x": None, "z": 0.3, "flag": "yes", "color": None, "city": "c3"},
    {"x": 1e9, "z": -1.0, "flag": "maybe", "color": "purple", "city": "c999"},  # far, not a word, unseen twice
    {"x": "inf", "z": 2.0, "flag": True, "color": "red", "city": 7},  # infinite; a bool and a number as categories
    {"x": "2.5", "z": 0, "flag": "NO", "color": "green", "city": "c7"},  # a number as a string
]


class Logged(logging.Handler):
    """The serve logger's warnings (caplog is off: the suite runs with -p no:logging)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        logger = logging.getLogger("scaletrain.serve")  # as the server's log sees it, whatever earlier tests set
        self.was = logger.level, logger.disabled
        logger.setLevel(logging.WARNING)
        logger.disabled = False
        logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger("scaletrain.serve")
        logger.removeHandler(self)
        logger.level, logger.disabled = self.was

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def served_answer(client, rows: list[dict]) -> dict:
    response = client.post("/predict", json={"records": rows})
    assert response.status_code == 200, response.text
    return response.json()


def assert_as_predict(answer: dict, expected: pd.DataFrame) -> None:
    assert answer["predictions"] == expected["prediction"].tolist()
    proba = np.array([[p[c] for c in sorted(p)] for p in answer["probabilities"]])
    want = expected[sorted(c for c in expected.columns if c.startswith("proba_"))].to_numpy()
    assert np.abs(proba - want).max() <= 1e-5
    assert answer["warnings"] == expected.attrs["warnings"]


def test_the_graph_answers_and_warns_as_predict_does(served_table):
    run = scaletrain.load(served_table)
    rows = json.loads(mixed_table(40, seed=9).drop(columns="label").to_json(orient="records")) + ODD_ROWS
    with TestClient(load_app(served_table)) as client:
        assert client.get("/health").json()["engine"] == "graph"
        frame = pd.DataFrame(rows)
        frame["x"] = pd.to_numeric(frame["x"])  # as a JSON body's numbers are read
        assert_as_predict(served_answer(client, rows), run.predict(frame))  # the hot path, one batch
        assert_as_predict(served_answer(client, ODD_ROWS[1:2]), run.predict(frame.iloc[[41]]))
        assert served_answer(client, rows[:3])["warnings"] == []  # clean rows: the graph's flags alone
        upload = client.post("/predict", files={"file": ("rows.csv", frame.to_csv(index=False).encode())}).json()
        assert upload["predictions"] == run.predict(frame)["prediction"].tolist()  # FastAPI's path, the same graph


def test_the_hot_path_refuses_as_the_app_does(served_table):
    with TestClient(load_app(served_table)) as client:
        big = {"records": [{"x": 0.1, "z": 0.2, "flag": "no", "color": "red", "city": "c1"}] * 2_000}
        body = json.dumps(big).encode()
        assert len(body) > HOT_BYTES  # past the hot path: FastAPI answers it, and the same way
        assert client.post("/predict", content=body, headers={"content-type": "application/json"}).status_code == 200
        for payload, status in ((b"{not json", 400), (b'{"records": [{"x": 1}]}', 422), (b'{"records": []}', 422)):
            small = client.post("/predict", content=payload, headers={"content-type": "application/json"})
            padded = payload + b" " * (HOT_BYTES + 1)  # the same body through FastAPI
            large = client.post("/predict", content=padded, headers={"content-type": "application/json"})
            assert small.status_code == large.status_code == status
            assert small.json() == large.json()


def test_the_graph_is_kept_rebuilt_when_stale_and_refused_when_it_predicts_otherwise(served_table, tmp_path, monkeypatch):
    import shutil

    import scaletrain.export as export

    run_dir = tmp_path / "run"
    shutil.copytree(served_table, run_dir)
    first = cached_graph(run_dir)
    exports = []
    real_export = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: exports.append(a) or real_export(*a, **k))
    assert cached_graph(run_dir) == first and not exports  # kept
    first.write_bytes(first.read_bytes() + b"\x00")  # an edited graph: exported again
    cached_graph(run_dir)
    assert len(exports) == 1

    model = onnx.load(str(first))  # a graph whose weights were changed, its card changed to match
    biggest = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    biggest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biggest) * -3.0, biggest.name))
    first.write_bytes(model.SerializeToString())
    card = json.loads(first.with_suffix(".card.json").read_text())
    import hashlib

    card["sha256"] = hashlib.sha256(first.read_bytes()).hexdigest()
    first.with_suffix(".card.json").write_text(json.dumps(card))
    with Logged() as caplog, TestClient(load_app(run_dir)) as client:
        assert client.get("/health").json()["engine"] == "torch"
        expected = scaletrain.load(run_dir).predict(pd.DataFrame(ODD_ROWS[:1]))
        assert served_answer(client, ODD_ROWS[:1])["predictions"] == expected["prediction"].tolist()
    assert "does not predict as the run does" in caplog.text
    assert len(exports) == 1


def test_a_run_directory_that_cannot_be_written_is_served_from_a_temporary_export(served_table, tmp_path, monkeypatch):
    import errno
    import shutil

    import scaletrain.export as export

    run_dir = tmp_path / "run"
    shutil.copytree(served_table, run_dir, ignore=shutil.ignore_patterns("model.onnx", "model.card.json"))
    real_export = export.export_onnx

    def read_only(run, out=None):
        if out is None:  # into the run directory
            raise OSError(errno.EROFS, "Read-only file system")
        return real_export(run, out)

    monkeypatch.setattr(export, "export_onnx", read_only)
    said = []
    path = cached_graph(run_dir, said.append)
    assert path.parent != run_dir and path.is_file() and "cannot be written (Read-only file system)" in said[-1]
    with TestClient(load_app(run_dir)) as client:
        assert client.get("/health").json()["engine"] == "graph"
        assert len(served_answer(client, ODD_ROWS)["predictions"]) == len(ODD_ROWS)


def test_a_run_without_an_onnx_form_is_served_through_torch(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"day": pd.date_range("2024-01-01", periods=120).astype(str), "v": rng.normal(size=120)})
    frame["label"] = np.where(frame["v"] > 0, "up", "down")
    run = scaletrain.fit(frame, "label", out=tmp_path / "dated", model="mlp", epochs=2)
    with Logged() as caplog, TestClient(load_app(run.path)) as client:
        assert client.get("/health").json()["engine"] == "torch"
        rows = [{"day": "2024-02-03", "v": 0.4}]
        assert served_answer(client, rows)["predictions"] == run.predict(pd.DataFrame(rows))["prediction"].tolist()
    assert "no ONNX form" in caplog.text and "datetime" in caplog.text
    assert not (tmp_path / "dated" / GRAPH).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_workers_share_the_port_and_stop_together(served_table):
    port = _free_port()
    process = warm_cli.start("serve", served_table, "--port", port, "--workers", "2", stderr=warm_cli.STDOUT,
                             new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        workers, deadline = set(), time.time() + 120
        while len(workers) < 2 and time.time() < deadline:
            try:
                workers.add(json.loads(urllib.request.urlopen(url + "/health", timeout=5).read())["worker"])
            except OSError:
                time.sleep(0.2)
        assert len(workers) == 2, "two worker processes answer on the one port"
        body = json.dumps({"records": ODD_ROWS[:2]}).encode()
        request = urllib.request.Request(url + "/predict", body, {"content-type": "application/json"})
        assert len(json.loads(urllib.request.urlopen(request, timeout=10).read())["predictions"]) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert process.returncode == 0
    for pid in workers:  # none left behind
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


def test_workers_stop_when_serve_is_killed(served_table):
    port = _free_port()
    process = warm_cli.start("serve", served_table, "--port", port, "--workers", "2", stdout=warm_cli.DEVNULL,
                             stderr=warm_cli.DEVNULL, new_session=True)
    workers, deadline = set(), time.time() + 120
    try:
        while len(workers) < 2 and time.time() < deadline:
            try:
                workers.add(json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read())["worker"])
            except OSError:
                time.sleep(0.2)
    finally:
        process.kill()  # SIGKILL: serve itself cannot stop its workers
        process.wait(60)
    assert len(workers) == 2

    def alive(pid: int) -> bool:
        return os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read()

    deadline = time.time() + 30
    while any(map(alive, workers)) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, workers)), "the workers of a killed server stop on their own"
