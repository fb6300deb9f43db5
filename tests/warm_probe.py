"""Run by tests/test_warm_cli.py as `python -m tests.warm_probe CODE`: prints what a process
started from the warm server sees, then exits with CODE (or, given `sleep`, waits to be killed)."""
import json
import multiprocessing
import os
import sys
import time

if __name__ == "__main__":
    print(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv[1:], "probe": os.environ.get("PROBE"),
                      "start_method": multiprocessing.get_start_method(), "stdin": sys.stdin.read(),
                      "torch_loaded": "torch" in sys.modules}), flush=True)
    print("to stderr", file=sys.stderr)
    if sys.argv[1] == "sleep":
        time.sleep(120)
    sys.exit(int(sys.argv[1]))
