"""Issue 29's server figures (loopback only, bounded): a burst of maximum-size requests against
`scaletrain serve` — its peak RSS, /health's latency while the burst is computed, and RSS 30 s
after the burst (does the memory go back?). Then the same burst of bad requests (a lone
surrogate in every row) beside valid ones: how many valid requests still get 200.

    python bench/serve_burst.py [--burst 8] [--rows 100000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scaletrain  # noqa: E402
from bench.serve_load import rss_mb  # noqa: E402
from tests.test_export import mixed_table  # noqa: E402
from tests.test_serve import free_port, wait_until_serving  # noqa: E402


def post(port: int, body: bytes, timeout: float = 600) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("POST", "/predict", body, {"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status


def main(burst: int = 8, rows: int = 100_000) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="serve-burst-"))
    scaletrain.fit(mixed_table(), "label", out=folder / "run", model="mlp", epochs=3, sets=["data.max_onehot=10"])
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "scaletrain", "serve", str(folder / "run"), "--port", str(port),
                               "--max-rows", str(rows), "--max-body-mb", "64", "--workers", "1"],  # one process's RSS
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}")
        records = json.loads(mixed_table(rows, seed=9).drop(columns="label").to_json(orient="records"))
        body = json.dumps({"records": records}).encode()
        post(port, json.dumps({"records": records[:10]}).encode())
        baseline = rss_mb(server.pid)
        peak, latencies, done = [baseline], [], threading.Event()

        def watch():
            while not done.is_set():
                started = time.perf_counter()
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30).read()
                latencies.append(time.perf_counter() - started)
                peak.append(rss_mb(server.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(burst) as pool:
            statuses = list(pool.map(lambda _: post(port, body), range(burst)))
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
        time.sleep(30)
        after = rss_mb(server.pid)
        good = json.dumps({"records": records[:1]}).encode()
        bad = json.dumps({"records": [records[0] | {"color": "\ud800"}]}).encode()
        with ThreadPoolExecutor(9) as pool:
            bad_statuses = pool.map(lambda _: post(port, bad, 60), range(100))
            good_statuses = list(pool.map(lambda _: post(port, good, 60), range(400)))
        result = {"burst": burst, "rows_per_request": rows, "body_mb": round(len(body) / 2 ** 20, 1),
                  "statuses": sorted(set(statuses)), "seconds": round(seconds, 1),
                  "rss_baseline_mb": round(baseline), "rss_peak_mb": round(max(peak)), "rss_30s_after_mb": round(after),
                  "health_p50_ms": round(1000 * float(np.median(latencies)), 1),
                  "health_p99_ms": round(1000 * float(np.quantile(latencies, 0.99)), 1),
                  "health_max_ms": round(1000 * max(latencies), 1), "health_samples": len(latencies),
                  "valid_ok_beside_bad": f"{sum(s == 200 for s in good_statuses)}/{len(good_statuses)}",
                  "bad_answered": sorted(set(bad_statuses))}
    finally:
        server.kill()
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=8)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    main(args.burst, args.rows)
