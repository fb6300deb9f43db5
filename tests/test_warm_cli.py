"""tests/warm_cli.py: a command line forked warm is a process of its own, set up as a launched one."""
import json
import os
import signal
import subprocess
import time

import pytest

from tests import warm_cli


def test_a_warm_process_has_its_own_pid_folder_environment_and_exit_code(tmp_path):
    done = warm_cli.run("3", module="tests.warm_probe", cwd=tmp_path, env={**os.environ, "PROBE": "seen"})
    seen = json.loads(done.stdout)
    assert done.returncode == 3 and done.stderr == "to stderr\n"
    assert seen["pid"] != os.getpid() and seen["cwd"] == str(tmp_path) and seen["argv"] == ["3"]
    assert seen["probe"] == "seen" and seen["stdin"] == ""
    assert seen["torch_loaded"]  # imported once, by the server it was forked from
    assert seen["start_method"] == "fork"  # the platform's default, as in a launched interpreter (DataLoader workers)


def test_a_warm_process_is_killed_by_signal_and_times_out_as_subprocess_does(tmp_path):
    log = tmp_path / "log"
    process = warm_cli.start("sleep", module="tests.warm_probe", stdout=log, stderr=warm_cli.STDOUT)
    deadline = time.time() + 30
    while "to stderr" not in log.read_text() and time.time() < deadline:
        time.sleep(0.01)
    assert process.poll() is None and json.loads(log.read_text().splitlines()[0])["pid"] == process.pid
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(0.1)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL and process.returncode == -signal.SIGKILL
