"""`scaletrain serve`: predictions over HTTP from raw input, 4xx answers that name the problem,
micro-batching of concurrent requests, a graceful SIGTERM, and the web page in a real browser."""
import json
import signal
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_digits

import scaletrain
from scaletrain.serve import load_app
from tests import warm_cli
from tests.test_export import mixed_table
from tests.test_text_columns import articles

ROW = {"x": 0.5, "z": 1.0, "flag": "yes", "color": "red", "city": "c3"}


@pytest.fixture(scope="module")
def table_run(served_table):
    return served_table


@pytest.fixture(scope="module")
def client(table_run):
    with TestClient(load_app(table_run)) as c:
        yield c


def test_records_columns_and_csv_uploads_are_predicted_as_predict_does(client, table_run):
    run = scaletrain.load(table_run)
    rows = mixed_table(30, seed=3).drop(columns="label")
    expected = run.predict(rows)
    records = json.loads(rows.to_json(orient="records"))
    answer = client.post("/predict", json={"records": records}).json()
    assert answer["predictions"] == expected["prediction"].tolist()
    assert np.allclose([p["pos"] for p in answer["probabilities"]], expected["proba_pos"], atol=1e-6)
    columns = client.post("/predict", json={"columns": {k: [r[k] for r in records] for k in records[0]}}).json()
    assert columns["predictions"] == answer["predictions"]
    upload = client.post("/predict", files={"file": ("rows.csv", rows.to_csv(index=False).encode())}).json()
    assert upload["predictions"] == answer["predictions"]
    assert client.post("/predict", json=records).json()["predictions"] == answer["predictions"]  # a bare list too


def test_rows_that_do_not_fit_come_back_with_warnings(client):
    answer = client.post("/predict", json={"records": [ROW | {"color": "purple", "x": 1e9}]}).json()
    assert len(answer["predictions"]) == 1
    assert any("'color'" in w and "never saw" in w for w in answer["warnings"])
    assert any("'x'" in w and "far outside" in w for w in answer["warnings"])


@pytest.mark.parametrize("body, status, says", [
    (b"{not json", 400, "malformed JSON"),
    (json.dumps({"records": [ROW | {"x": "tall"}]}).encode(), 422, "column 'x': input should be a valid number"),
    (json.dumps({"records": [{k: v for k, v in ROW.items() if k != "z"}]}).encode(), 422, "column 'z' is missing"),
    (json.dumps({"records": [ROW | {"shoe_size": 3}]}).encode(), 422, "unknown column 'shoe_size'"),
    (json.dumps({"records": []}).encode(), 422, "non-empty list"),
    (json.dumps({"rows": [ROW]}).encode(), 422, "needs 'records'"),
    (json.dumps({"columns": {"x": [1, 2], "z": [1]}}).encode(), 422, "all of one length"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(client, body, status, says):
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status and says in response.json()["error"]
    assert "Traceback" not in response.text


def test_oversized_bodies_and_wrong_uploads_are_refused(table_run):
    with TestClient(load_app(table_run, max_body=1000)) as small:
        response = small.post("/predict", json={"records": [ROW] * 100})
        assert response.status_code == 413 and "over the limit" in response.json()["error"]
        image = small.post("/predict", files={"file": ("a.png", b"\x89PNG not really", "image/png")})
        assert image.status_code == 415 and "reads table rows" in image.json()["error"]
        csv = small.post("/predict", files={"file": ("a.csv", b"x,z\n1,2\n")})
        assert csv.status_code == 200 and any("missing column" in w for w in csv.json()["warnings"])


def test_metadata_health_and_the_typed_schema(client):
    meta = client.get("/metadata").json()
    assert meta["classes"] == ["neg", "pos"] and [f["name"] for f in meta["inputs"]] == ["x", "z", "flag", "color", "city"]
    assert client.get("/health").json()["status"] == "ok"
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    row = body["application/json"]["schema"]["oneOf"][0]["properties"]["records"]["items"]
    assert set(row["required"]) == {"x", "z", "flag", "color", "city"} and row["additionalProperties"] is False
    assert "multipart/form-data" in body and "<form" in client.get("/").text


def test_image_runs_take_uploads_and_refuse_what_is_not_an_image(tmp_path):
    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype(np.uint8)
    scaletrain.fit(images[:600, :, :, None], y=digits.target[:600], out=tmp_path / "img", model="linear", epochs=2)
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(images[700]).resize((32, 32)).save(png, format="PNG")
    with TestClient(load_app(tmp_path / "img")) as c:
        answer = c.post("/predict", files={"file": ("seven.png", png.getvalue(), "image/png")}).json()
        assert len(answer["probabilities"][0]) == 10
        raw = c.post("/predict", content=png.getvalue(), headers={"content-type": "image/png"})
        assert raw.json()["predictions"] == answer["predictions"]
        bad = c.post("/predict", files={"file": ("x.png", b"GIF89a but not", "image/png")})
        assert bad.status_code == 422 and "is not an image" in bad.json()["error"]
        assert c.post("/predict", json={"records": [{}]}).status_code == 415


def test_text_runs_take_plain_text_and_refuse_empty_text(tmp_path):
    scaletrain.fit(articles(150)[["body", "topic"]], "topic", out=tmp_path / "text", model="linear", epochs=3)
    with TestClient(load_app(tmp_path / "text")) as c:
        answer = c.post("/predict", content=b"the goal of the match and the team", headers={"content-type": "text/plain"})
        assert answer.status_code == 200 and answer.json()["predictions"][0] in TOPICS_SEEN
        empty = c.post("/predict", content=b"   ", headers={"content-type": "text/plain"})
        assert empty.status_code == 422 and "empty text" in empty.json()["error"]


TOPICS_SEEN = {"sport", "tech", "money"}


# ---------------------------------------------------------------- a real server process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, seconds: float = 30) -> None:
    """Return once the server at `url` answers /health (or after `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return
        except OSError:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server(table_run):
    """One worker process, so that /health counts the model calls of the process that answered
    (several workers on 2 cores are tested in test_serve_graph.py)."""
    port = free_port()
    process = warm_cli.start("serve", table_run, "--port", port, "--max-body-mb", "64", "--workers", "1",
                             stderr=warm_cli.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url)
    yield url, process
    if process.poll() is None:
        process.kill()


def post_json(url: str, payload) -> dict:
    request = urllib.request.Request(url + "/predict", json.dumps(payload).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.serial
def test_concurrent_requests_are_batched_into_fewer_model_calls(server):
    """Requests that arrive while a forward pass runs go through the next one together. A large
    request holds the model for a while, so the small ones surely arrive during a pass (lone
    small requests on an idle server may each be answered before the next one is parsed)."""
    url, _ = server

    def health() -> dict:
        return json.loads(urllib.request.urlopen(url + "/health").read())

    before = health()["model_calls"]
    with ThreadPoolExecutor(33) as pool:
        big = pool.submit(post_json, url, {"records": [ROW] * 60_000})
        deadline = time.monotonic() + 60
        while health()["rows_in_flight"] != 60_000 and not big.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        answers = list(pool.map(lambda i: post_json(url, {"records": [ROW | {"x": i / 10}]}), range(32)))
        assert len(big.result()["predictions"]) == 60_000
    calls = health()["model_calls"] - before - 1
    assert all(len(a["predictions"]) == 1 for a in answers)
    assert calls < 32  # several requests answered by one forward pass


def test_the_micro_batcher_sends_what_queued_during_a_pass_through_the_next_one():
    import asyncio

    from scaletrain.serve.batcher import MicroBatcher

    release, seen = threading.Event(), []

    def process(records):
        seen.append(len(records))
        release.wait(10)  # the first pass holds until every other request has queued
        return records

    async def main():
        batcher = MicroBatcher(process, lambda answer, start, end: answer[start:end], max_rows=256)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.sleep(0.05)
        assert batcher.rows_in_flight == 1
        others = [asyncio.ensure_future(batcher.submit([i, i])) for i in range(1, 11)]
        await asyncio.sleep(0.05)
        release.set()
        answers = await asyncio.gather(first, *others)
        await batcher.stop()
        return answers, batcher

    answers, batcher = asyncio.run(main())
    assert answers == [[0]] + [[i, i] for i in range(1, 11)]
    assert seen == [1, 20] and batcher.calls == 2 and batcher.rows_in_flight == 0


def test_the_web_page_predicts_a_row_in_a_real_browser(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    driver = browser
    driver.get(url + "/")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "f_city"))
    for name, value in ROW.items():
        field = driver.find_element(By.ID, f"f_{name}")
        if field.tag_name == "select":  # a boolean: true/false/(missing)
            field.find_element(By.CSS_SELECTOR, "option[value='true']").click()
        else:
            field.send_keys(str(value))
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "prediction").text.startswith("Prediction:"))
    expected = post_json(url, {"records": [ROW]})["predictions"][0]
    assert driver.find_element(By.ID, "prediction").text == f"Prediction: {expected}"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 2


def test_sigterm_finishes_the_request_in_flight_then_exits(server):
    url, process = server
    rows = mixed_table(100_000, seed=4).drop(columns="label").to_csv(index=False).encode()
    boundary = "scaletrainboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode() + rows + f"\r\n--{boundary}--\r\n".encode()
    result = {}

    def send():
        request = urllib.request.Request(url + "/predict", body, {"content-type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            result["status"], result["answer"] = response.status, json.loads(response.read())

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.5)  # the upload is in; parsing and predicting 100,000 rows takes longer than this
    process.send_signal(signal.SIGTERM)
    sender.join(120)
    assert result.get("status") == 200 and len(result["answer"]["predictions"]) == 100_000
    assert process.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down


def test_serve_says_when_the_port_is_taken_or_the_run_is_missing(table_run, tmp_path):
    from typer.testing import CliRunner

    from scaletrain.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(table_run), "--port", str(port)])
    assert result.exit_code == 2 and "cannot listen on" in result.output and "serving" not in result.output
    missing = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
