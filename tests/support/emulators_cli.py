"""`python -m emulators` as a person runs it: a process of its own, ready once its ready file exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def start_emulators(cwd: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m emulators ARGS` in `cwd` (the repository on PYTHONPATH, as from a checkout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "emulators", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_ready_file(path: Path, process: subprocess.Popen[str], limit_s: float = 30) -> dict[str, Any]:
    """The ready file's JSON once the emulators wrote it; fails with their stderr if they exit or stall."""
    deadline = time.monotonic() + limit_s
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"emulators did not become ready: {process.communicate()[1]}")
        time.sleep(0.05)
    return json.loads(path.read_text())
