"""Process-level settings that make training faster on CPU, and the process's age.

glibc returns freed memory to the OS eagerly and serves big blocks with fresh mmaps, so a
training loop that frees and re-allocates the same activation buffers every step page-faults
millions of times. Raising the trim and mmap thresholds keeps those pages in the process:
measured on zero-config Fashion-MNIST, one epoch, 2 cores: 3.56 M → 0.12 M minor faults,
system time 15 s → 3 s, training 39.5 s → 34.5 s (BENCHMARKS.md).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from pathlib import Path

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; return whether it applied.

    A no-op elsewhere (macOS, musl, Windows). The process keeps its peak heap instead of
    shrinking after each step, which is what a training process wants.
    """
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # mmap threshold is capped by glibc at 32 MiB on 64-bit; beyond it blocks still come from mmap
    applied = all(mallopt(option, value) == 1 for option, value in
                  ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
    _done = applied
    return applied


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim); return whether it ran.

    For loops whose big tensors change size every step (masked-LM outputs: one row per masked
    token): glibc then cannot reuse its holes and the heap grows without bound — measured
    pretraining width 128, vocabulary 30,000: 0.57 GB at step 0, 1.88 GB at step 120; trimmed
    every 10 steps it stays at 0.57 GB for 2% of the time (41.1 s vs 42.0 s for 121 steps)."""
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0) or True)
    except (OSError, AttributeError):
        return False


def cores() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_started() -> float:
    """The perf_counter reading at which this process started (Linux: /proc/self/stat's start
    time; elsewhere now): a command's time limit counts from there, its imports included."""
    now = time.perf_counter()
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22 of proc(5), counted after the command name
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - min(max(age, 0.0), 3600.0)  # a clock oddity never eats a limit whole
