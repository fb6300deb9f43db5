"""Serving figures (issues 17 and 36; loopback only, bounded runs): throughput and p50/p99
latency of `scaletrain serve` at 1, 16 and 64 concurrent connections — through torch as before
(`--engine torch`), from the exported graph (the default), and with two workers — against a
bare in-process onnxruntime loop on the same rows (one row per call), and 100,000 requests
with the server's RSS sampled from the first 10,000 to the last.

The load comes from wrk (C; `apt-get install wrk`): a Python client on the same 2 cores
measured itself, not the server (httpx with 64 connections saturated a core at ~150 req/s).

    python bench/serve_load.py [--seconds 10] [--long 100000]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scaletrain  # noqa: E402
from scaletrain.export import export_onnx, onnx_inputs  # noqa: E402
from tests.test_export import mixed_table  # noqa: E402

SCRIPT = """
bodies = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, bodies[counter %% #bodies + 1])
end
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bare_onnx(path: Path, run, rows, n: int) -> tuple[float, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = [onnx_inputs(run, rows.iloc[[i]]) for i in range(len(rows))]
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        session.run(None, feeds[i % len(feeds)])
        latencies.append(time.perf_counter() - t)
    return n / (time.perf_counter() - started), np.asarray(latencies)


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    """One wrk run: requests, requests/s, p50/p99 (ms), errors (non-2xx and socket)."""
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
                          "-s", str(script), url + "/predict"], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": ms("50%"), "p99": ms("99%"), "errors": socket_errors + non_2xx}


def health(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "/health", timeout=10).read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, *options: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "scaletrain", "serve", str(run_dir), "--port", str(port), *options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            health(url)
            return server, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def loads(run_dir: Path, script: Path, rate: float, seconds: float, *options: str) -> None:
    """One server's throughput and latency at 1, 16 and 64 connections."""
    server, url = start_server(run_dir, *options)
    try:
        wrk(url, script, 16, 2)  # warm-up
        for connections in (1, 16, 64):
            r = wrk(url, script, connections, seconds)
            print(f"   serve {' '.join(options)}, {connections:>2} connections: {r['rate']:,.0f} requests/s "
                  f"({r['rate'] / rate:.3f}x the bare loop's rows/s), p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                  f"{r['errors']} errors ({r['requests']:,} requests)")
    finally:
        server.terminate()
        server.wait(60)


def long_run(run_dir: Path, script: Path, requests: int) -> None:
    """`requests` requests at 16 connections: errors, and the server's memory from the first 10,000 to the last."""
    server, url = start_server(run_dir, "--workers", "1")  # one process, whose RSS is sampled
    try:
        start, sent, errors, samples = health(url), 0, 0, []
        while sent < requests:
            r = wrk(url, script, 16, 5)
            sent, errors = sent + r["requests"], errors + r["errors"]
            samples.append((sent, rss_mb(server.pid)))
        end = health(url)
        first = next(((n, mb) for n, mb in samples if n >= 10_000), samples[0])
        print(f"   {sent:,} requests at 16 connections: {errors} errors, {end['rows'] - start['rows']:,} rows predicted "
              f"(≥ responses: wrk cuts requests in flight at its deadline), server RSS {first[1]:.0f} MB after "
              f"{first[0]:,} requests, {samples[-1][1]:.0f} MB after {sent:,}")
        print(f"   batching over the run: {end['rows'] / max(end['model_calls'], 1):.1f} rows per model call")
    finally:
        server.terminate()
        server.wait(60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--long", type=int, default=100_000)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("   serving load skipped: wrk is not installed (apt-get install wrk)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = scaletrain.fit(mixed_table(2000), "label", out=Path(tmp) / "run", model="mlp", epochs=5)
        path = export_onnx(run.path)
        rows = mixed_table(500, seed=5).drop(columns="label")
        bodies = [json.dumps({"records": json.loads(rows.iloc[[i]].to_json(orient="records"))}) for i in range(len(rows))]
        script = Path(tmp) / "post.lua"
        script.write_text(SCRIPT % ",\n".join("[==[" + b + "]==]" for b in bodies))
        rate, lat = bare_onnx(path, run, rows, 20_000)
        print(f"   bare onnxruntime loop in process, 1 row per call: {rate:,.0f} rows/s, p50 {1e3 * np.median(lat):.3f} ms, "
              f"p99 {1e3 * np.quantile(lat, 0.99):.3f} ms")
        for options in (("--engine", "torch", "--workers", "1"), ("--workers", "1"), ("--workers", "2")):
            loads(run.path, script, rate, args.seconds, *options)
        if args.long:
            long_run(run.path, script, args.long)


if __name__ == "__main__":
    main()
