"""keep_freed_memory: freed blocks stay in the process instead of being page-faulted back."""
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from scaletrain.runtime import keep_freed_memory
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    blocks = [np.ones((size << 20) // 8) for size in (1, 3, 6, 12, 2)]  # like a step's activations
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    return int(subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True,
                              text=True).stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keeping_freed_memory_removes_the_page_faults_of_reallocating():
    assert faults("keep") * 20 < faults("default")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/stat")
def test_process_started_counts_the_time_before_the_first_import():
    """A command's time limit counts from its process's start: a second spent before scaletrain
    is imported (as a slow import would) is in the age the command sees."""
    script = ("import time; time.sleep(1.0); from scaletrain.runtime import process_started; "
              "print(time.perf_counter() - process_started())")
    age = float(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout)
    assert 1.0 <= age < 30.0
