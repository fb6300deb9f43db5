"""`python -m scaletrain ARGS` in a real process of its own, forked from a server that imported
scaletrain, torch, scikit-learn and the rest once (multiprocessing's forkserver and its preload).

Why: a fresh interpreter spends 4-5 s of its core importing them before the command starts
(py-spy counted about a quarter of the two-worker phase's CPU in imports, most of it in the
command lines the tests started); a forked one starts in ~0.1 s. The child
is still a process of its own: its own pid (the run lock names it; a test can SIGKILL it), exit
code, output, environment and working folder, and the launchers it starts (torchrun's ranks,
serve's workers, tune's trials) are fresh interpreters as before. What a cold start imports is
tested where it matters by exec'ing one (test_cli.py)."""
from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # its exit handler registered before ours, which runs first
import os
import runpy
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# what the command line's verbs import: loaded once in the server (a child imports the rest)
PRELOAD = ["scaletrain.cli", "scaletrain.api", "scaletrain.fitting.pipeline", "scaletrain.serve",
           "scaletrain.export.onnx_export", "torch._dynamo", "torch.distributed.run", "captum.attr"]
PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
_started: list[multiprocessing.Process] = []


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _command_line(module: str, args: list[str], cwd: str, env: dict, streams: tuple[str, str], new_session: bool):
    """The child: set up as `subprocess.Popen` would have, then run the module as `python -m`."""
    if new_session:
        os.setsid()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, streams[0], os.O_WRONLY | os.O_APPEND),
                            (2, streams[1], os.O_WRONLY | os.O_APPEND)):
        target = os.open(path, flags)
        os.dup2(target, fd)  # the standard descriptors, as a launched process has them (uvicorn's workers inherit 0)
        os.close(target)
    sys.stdin = open(0, closefd=False)
    buffered = -1 if not env.get("PYTHONUNBUFFERED") else 1
    sys.stdout = open(1, "w", buffering=buffered, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
    sys.argv = [module, *args]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    multiprocessing.set_start_method(None, force=True)  # the platform's default again, not the forkserver
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else 0 if end.code is None else 1
        if not isinstance(end.code, (int, type(None))):
            print(end.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, exit code 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()  # a multiprocessing child skips them; an interpreter's exit runs them
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


class Warm:
    """The handle of a started command, with the parts of `subprocess.Popen` the tests use."""

    def __init__(self, args: list[str], cwd, env, stdout, stderr, new_session: bool, module: str):
        self.args = [module, *args]
        self._folder = tempfile.TemporaryDirectory(prefix="warm-cli-")
        out = self._stream(stdout, "stdout")
        err = out if stderr == STDOUT else self._stream(stderr, "stderr")
        self._paths = {"stdout": out if stdout == PIPE else None, "stderr": err if stderr == PIPE else None}
        self._process = _context().Process(
            target=_command_line, args=(module, args, str(cwd or os.getcwd()), dict(os.environ if env is None else env),
                                        (out, err), new_session))
        self._process.start()
        _started.append(self._process)
        self.pid = self._process.pid
        self.stdout = open(out) if stdout == PIPE else None
        self.stderr = open(err) if stderr == PIPE else None

    def _stream(self, how, name: str) -> str:
        """The file a stream goes to: /dev/null, one of ours read back as the pipe, or a path given."""
        if how in (None, DEVNULL):
            return os.devnull
        path = Path(self._folder.name) / name if how == PIPE else Path(how)
        path.touch()
        return str(path)

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        self.wait(timeout)
        return tuple(Path(p).read_text(errors="replace") if p else None for p in self._paths.values())


def start(*args, cwd=None, env=None, stdout=PIPE, stderr=PIPE, new_session=False, module="scaletrain") -> Warm:
    """`subprocess.Popen([python, "-m", module, *args], text=True, ...)`, started warm; `stdout`
    and `stderr` are PIPE, DEVNULL, STDOUT (stderr) or a file's path."""
    return Warm([str(a) for a in args], cwd, env, stdout, stderr, new_session, module)


def run(*args, cwd=None, env=None, timeout: float = 300, check: bool = False,
        module="scaletrain") -> subprocess.CompletedProcess:
    """`subprocess.run([python, "-m", module, *args], capture_output=True, text=True, ...)`, warm."""
    process = start(*args, cwd=cwd, env=env, module=module)
    try:
        out, err = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    if check and process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, out, err)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@atexit.register  # before multiprocessing's own exit handler, which would wait for any still running
def _stop_leftovers() -> None:
    for process in _started:
        if process.exitcode is None:
            process.kill()
            process.join(5)
