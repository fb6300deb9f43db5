"""The processes that run a study's cells on this machine: `count` fresh interpreters, started
once, each importing torch and scaletrain once and then running cell after cell that the study
sends on its stdin. An interpreter per cell paid that start (~4 s on one core) for every cell:
a 12-cell study on 2 cores took 57 s, and 27 s this way (BENCHMARKS.md).

Fresh interpreters (`python -m scaletrain.scale.workers`), not multiprocessing: nothing depends
on how the caller's script is written (spawn would import its `__main__` again). A cell's
output, ours or a library's, goes to the worker's log; only the study's own lines use the
worker's first stdout, so nothing a cell prints can be mistaken for an answer."""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from pathlib import Path

from scaletrain.errors import ScaletrainError

READY, DONE = "scaletrain-cell-worker ready", "scaletrain-cell-done "


class CellWorkers:
    """`with CellWorkers(2, folder) as workers: workers.ready(); workers.run(plan_text, cells)`."""

    def __init__(self, count: int, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.logs = [folder / f"worker-{i}.log" for i in range(count)]
        self.processes = []
        for log in self.logs:
            with open(log, "w") as stderr:  # a file, not a pipe: a full pipe would block the worker
                self.processes.append(subprocess.Popen([sys.executable, "-m", "scaletrain.scale.workers"], text=True,
                                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr))
        self.selector = selectors.DefaultSelector()
        for i, process in enumerate(self.processes):
            self.selector.register(process.stdout, selectors.EVENT_READ, i)
        self.started = set()

    def ready(self) -> None:
        """Wait until every worker has imported what the cells need."""
        while len(self.started) < len(self.processes):
            for i, line in self._lines():
                if line.startswith(READY):
                    self.started.add(i)

    def run(self, plan_text: str, cells: list[tuple], progress=None) -> list[dict]:
        """Each cell's result, the cells handed out in order to whichever worker is free."""
        self.ready()
        waiting, busy, results = list(cells), {}, []
        while waiting or busy:
            for i in range(len(self.processes)):
                if waiting and i not in busy:
                    busy[i] = waiting.pop(0)
                    self.processes[i].stdin.write(json.dumps({"plan": plan_text, "cell": busy[i]}) + "\n")
                    self.processes[i].stdin.flush()
            for i, line in self._lines(busy):
                if line.startswith(DONE):
                    results.append(json.loads(line[len(DONE):]))
                    del busy[i]
                    if progress:
                        progress(len(results), len(cells))
        return results

    def _lines(self, busy: dict | None = None):
        """(worker, line) for each line a worker wrote; a worker that ended is an error naming its cell."""
        for key, _ in self.selector.select(timeout=1.0):
            line = key.fileobj.readline()
            if line:
                yield key.data, line.rstrip("\n")
                continue
            i, cell = key.data, (busy or {}).get(key.data)
            code = self.processes[i].wait()
            lines = self.logs[i].read_text().strip().splitlines()
            what = f"scaling cell width {cell[0]}, fraction {cell[1]:g}" if cell else "a scaling study's worker process"
            raise ScaletrainError(f"{what} failed: {(lines or [f'exit {code}'])[-1]}")

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
            process.wait()
            process.stdin.close()
            process.stdout.close()
        self.selector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main() -> None:
    """A worker: stray output to the log (fd 1 pointed at stderr), the study's lines to the first stdout."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import scaletrain.fitting.pipeline  # noqa: F401  (torch and the fit: what every cell needs, before saying ready)
    from scaletrain.scale.study import run_cell

    print(READY, file=answers, flush=True)
    for line in sys.stdin:
        order = json.loads(line)
        result = run_cell(order["plan"], *order["cell"])
        print(DONE + json.dumps(result), file=answers, flush=True)


if __name__ == "__main__":
    main()
