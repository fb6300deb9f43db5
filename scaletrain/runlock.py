"""One writer per run directory: `train`, `pretrain`, `tune` and `compress` hold an OS lock on
RUN/.lock for the whole command, and refuse a directory that already holds a run unless told
to resume it or to replace it whole.

An OS lock rather than a pid file: the kernel drops it when its holder dies (a crash, `kill -9`),
so a stale lock never blocks the next run, and two processes can never both win. A POSIX
record lock (`lockf`), not `flock`: a forked child (a data-loader worker) does not inherit it,
so a killed run's orphaned workers cannot keep its directory locked. Workers that a launcher
started (torchrun, Ray Train) run under their launcher's lock.
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from scaletrain.errors import RunDirError
from scaletrain.rundir import CheckpointFolder

LOCK = ".lock"
HELD = "SCALETRAIN_RUN_LOCK"  # the directory whose lock this process (or its launcher) holds
LAUNCHED = "SCALETRAIN_LAUNCHED"  # set in workers that `train`/`pretrain` launched (torchrun, Ray Train)
RUN_FILES = ("config.yaml", "model.safetensors", "metrics.json", "preprocess.json")


def holds_run(folder: Path) -> bool:
    """True if `folder` holds a run's files or checkpoints (finished or interrupted)."""
    if any((folder / name).exists() for name in RUN_FILES):
        return True
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and any(checkpoints.rglob("step-*.safetensors"))


def has_checkpoint(folder: Path) -> bool:
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and not checkpoints.is_symlink() and any(checkpoints.rglob("step-*.safetensors"))


def check_inside(folder: Path) -> None:
    """Refuse a run directory with symbolic links in it: nothing is followed out of it."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise RunDirError(f"'{path}' is a symbolic link; a run directory's files must lie inside it "
                              "(replace the link with the file itself)")


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def run_lock(folder: str | Path):
    """Hold RUN/.lock for the block; a second writer gets RunDirError naming the holder."""
    folder = Path(folder)
    here = str(folder.resolve())
    if os.environ.get(HELD) == here:  # a worker of the launcher that holds it
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise RunDirError(f"cannot lock '{folder / LOCK}' ({exc.strerror}); is '{folder}' writable?") from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise RunDirError(f"cannot lock '{folder / LOCK}' ({exc.strerror})") from None
            raise RunDirError(f"'{folder}' is being written by process {_holder(fd)}; wait for it to finish or "
                              "choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        previous, os.environ[HELD] = os.environ.get(HELD), here  # what this process launches runs under it
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(HELD, None)
            else:
                os.environ[HELD] = previous
    finally:
        os.close(fd)  # closing releases the lock


def claim(folder: str | Path, *, resume: bool = False, overwrite: bool = False, or_start: bool = False) -> None:
    """Check that a writer may start in `folder` (call it under `run_lock`): a directory that
    holds a run needs `resume` or `overwrite` (which clears it whole first); `resume` needs a
    checkpoint unless `or_start`."""
    folder = Path(folder)
    check_inside(folder)
    if overwrite and resume:
        raise RunDirError("--resume and --overwrite contradict each other: give one")
    if overwrite:
        clear(folder)
    elif resume and not or_start:
        if not has_checkpoint(folder):
            raise RunDirError(f"--resume: '{folder}' has no checkpoint to continue from; train without --resume "
                              "(or give --resume-or-start)")
        for checkpoints in {path.parent for path in (folder / "checkpoints").rglob("step-*.safetensors")}:
            if not any(CheckpointFolder(checkpoints).verifies(path) for path in CheckpointFolder(checkpoints).files()):
                raise RunDirError(f"--resume: every checkpoint in '{checkpoints}' is damaged (checksums do not match); "
                                  "train afresh with --overwrite (or give --resume-or-start)")
    elif holds_run(folder):
        raise RunDirError(f"'{folder}' already holds a run; give --resume to continue it, --overwrite to replace it, "
                          "or another --out")


def clear(folder: Path) -> None:
    """Remove everything in the run directory but its lock (a replaced run leaves nothing
    behind); a folder that holds no run (`--out .`, say) is left as it is."""
    if not folder.is_dir() or not holds_run(folder):
        return
    for path in folder.iterdir():
        if path.name == LOCK:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextmanager
def writing(out, resume: bool, overwrite: bool = False, or_start: bool = False):
    """Hold `out`'s lock for the block and check that a writer may start there, in the process
    that writes it (rank 0 under a plain torchrun; launched workers run under their launcher's
    lock). No lock for no directory (None) or a fresh time-stamped one ("auto")."""
    if out in (None, "auto") or LAUNCHED in os.environ or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with run_lock(out):
        claim(out, resume=resume, overwrite=overwrite, or_start=or_start)
        yield
