"""The run-directory fuzz suite's cases, run in a fresh process (so that its peak memory is its
own): `python -m tests.rundir_fuzz ROOT EXAMPLES` where ROOT holds table_run/, image_run/,
table.csv and images.npz; prints one JSON line with the failures, case count, slowest case and
peak RSS.

Each case copies a run directory, mutates one file (tests/rundir_mutations.py) and runs one
command that reads a run — info, predict, evaluate, explain, export, or the server's start —
in process through the CLI; it must exit 0 or 2, never 1, print no traceback, at most 3 lines
when it fails, and finish within 30 s. Hypothesis draws (run, file, mutation, command); every
(run, file, mutation) is also tried once with `info`, and the checkpoints with `--resume`.
"""
from __future__ import annotations

import hashlib
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.rundir_mutations import FILES, empty, random_bytes, truncate

COMMANDS = ("info", "predict", "evaluate", "explain", "export", "serve")
RUNS = {"table_run": "table.csv", "image_run": "images.npz"}
TRAIN = ["--target", "y", "--quiet", "--set", "model.name=mlp", "--set", "train.epochs=2", "--set", "data.max_onehot=4"]
LIMIT_SECONDS = 30


class Cases:
    def __init__(self, root: Path):
        self.root, self.runner = root, CliRunner()
        self.failures: list[str] = []
        self.count, self.slowest = 0, 0.0

    def argv(self, command: str, run: Path, data: Path, scratch: Path) -> list[str]:
        return {"info": ["info", str(run)],
                "predict": ["predict", str(run), str(data), "--output", str(scratch / "p.csv")],
                "evaluate": ["evaluate", str(run), str(data)],
                "explain": ["explain", str(run), str(data), "--out", str(scratch / "explained"), "--rows", "4"],
                "export": ["export", str(run), "--out", str(scratch / "m.onnx")]}[command]

    def run(self, argv: list[str]) -> tuple[int, str]:
        from scaletrain.cli import app

        result = self.runner.invoke(app, argv)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            return 1, f"{type(result.exception).__name__}: {result.exception}"
        return result.exit_code, result.output

    def serve_start(self, run: Path) -> tuple[int, str]:
        from scaletrain.errors import ScaletrainError
        from scaletrain.serve import load_app

        try:
            load_app(run)
        except ScaletrainError as exc:
            return 2, str(exc)
        except Exception as exc:  # noqa: BLE001 - recorded as the failure it is
            return 1, f"{type(exc).__name__}: {exc}"
        return 0, ""

    def case(self, kind: str, file: str, mutation, command: str, seed: int = 0) -> None:
        scratch = self.root / "case"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        run = scratch / "run"
        shutil.copytree(self.root / kind, run, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
        if not (run / file).exists():
            return
        mutation(run / file, np.random.default_rng(seed))
        started = time.perf_counter()
        code, output = (self.serve_start(run) if command == "serve"
                        else self.run(self.argv(command, run, self.root / RUNS[kind], scratch)))
        self.judge(f"{kind}/{file} {mutation.__name__} {command}", code, output, time.perf_counter() - started)

    def judge(self, name: str, code: int, output: str, seconds: float) -> None:
        self.count += 1
        self.slowest = max(self.slowest, seconds)
        lines = output.strip().splitlines()
        if code not in (0, 2) or "Traceback" in output or (code == 2 and len(lines) > 3) or seconds > LIMIT_SECONDS:
            self.failures.append(f"{name}: exit {code}, {len(lines)} lines, {seconds:.1f}s: {' | '.join(lines[-3:])[:300]}")

    # ------------------------------------------------------------ --resume
    def resume_cases(self) -> None:
        """Checkpoints damaged, forged (checksum recomputed) or emptied: --resume falls back to an
        intact one, or exits 2 saying none is left."""
        for name, damage in (("newest truncated", _damage_newest(truncate)), ("newest forged", _forge_newest),
                             ("all random", _damage_all(random_bytes)), ("sidecars empty", _sidecars(empty))):
            out = self.root / "resume"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(self.root / "table_run", out)
            damage(out / "checkpoints")
            started = time.perf_counter()
            code, output = self.run(["train", str(self.root / "table.csv"), "--out", str(out), "--resume", *TRAIN])
            self.judge(f"checkpoints {name} --resume", code, output, time.perf_counter() - started)


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("step-*.safetensors"))


def _damage_newest(mutation):
    def damage(folder: Path) -> None:
        mutation(_files(folder)[-1], np.random.default_rng(0))
    return damage


def _damage_all(mutation):
    def damage(folder: Path) -> None:
        for path in _files(folder):
            mutation(path, np.random.default_rng(0))
    return damage


def _sidecars(mutation):
    def damage(folder: Path) -> None:
        for path in _files(folder):
            mutation(path.with_suffix(".json"), np.random.default_rng(0))
    return damage


def _forge_newest(folder: Path) -> None:
    """A checkpoint whose tensors are another shape, with its checksum recomputed to match."""
    from safetensors.torch import load_file, save_file

    path = _files(folder)[-1]
    tensors = load_file(str(path))
    name = next(k for k in tensors if k.startswith("model."))
    tensors[name] = tensors[name][:1]
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        metadata = fh.metadata()
    save_file(tensors, str(path), metadata=metadata)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    sidecar["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_suffix(".json").write_text(json.dumps(sidecar))


def main(root: Path, examples: int) -> dict:
    from scaletrain.cli.options import one_line_warnings

    one_line_warnings()
    cases = Cases(root)
    cases.case("table_run", "history.csv", truncate, "predict")  # warm: the imports a case needs
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for kind in RUNS:
        for file, mutations in FILES.items():
            for mutation in mutations:
                cases.case(kind, file, mutation, "info")
    drawn = st.tuples(st.sampled_from(sorted(RUNS)), st.sampled_from(sorted(FILES)), st.integers(0, 20),
                      st.sampled_from(COMMANDS), st.integers(0, 3))

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(drawn)
    def fuzz(case) -> None:
        kind, file, index, command, seed = case
        mutations = FILES[file]
        cases.case(kind, file, mutations[index % len(mutations)], command, seed)

    fuzz()
    cases.resume_cases()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"failures": cases.failures, "cases": cases.count, "slowest": cases.slowest, "peak_rss": peak,
            "baseline_rss": baseline}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))))
