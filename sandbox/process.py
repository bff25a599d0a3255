"""Runs `python app.py [callback]` as a process of its own, as AgentRun starts it, for the sandbox and tests.

The agent and the callback are separate deployments in production (the callback must be reachable by
browsers without a bearer token), so locally they are separate processes too: nothing one holds in memory
helps the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from emulators._server import listening_socket

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for a child process, which must bind it itself)."""
    with listening_socket() as sock:
        return sock.getsockname()[1]


class AppProcessFailed(RuntimeError):
    """The process exited or never answered `/health`; the message ends with its output."""


@contextmanager
def app_process(env: Mapping[str, str], *args: str, port: int, code_dir: Path = ROOT,
                python: str = sys.executable, isolated: bool = False, log_path: Path | None = None,
                echo: bool = False, started: list[subprocess.Popen[bytes]] | None = None) -> Iterator[str]:
    """Start `python app.py *args` in `code_dir` on 127.0.0.1:`port`, yield its base URL once `/health`
    answers, and stop it (SIGTERM, then SIGKILL) when the block ends. Only `env` reaches the process, plus
    PATH and the settings that keep it offline. `isolated`: no site-packages and no PYTHONPATH (`-E -s -S`), so
    only `code_dir` can satisfy imports, as on AgentRun. Its output goes to `log_path` (else a temporary file),
    or with `echo` to this process's own output. `started` receives the process (e.g. to signal it)."""
    child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
                 "PYTHONDONTWRITEBYTECODE": "1", **env, "HOST": "127.0.0.1", "PORT": str(port)}
    child_env.pop("FC_CUSTOM_LISTEN_PORT", None)
    base_url = f"http://127.0.0.1:{port}"
    with (open(log_path, "w+b") if log_path else tempfile.TemporaryFile()) as output:
        flags = ["-E", "-s", "-S"] if isolated else []
        process = subprocess.Popen([python, *flags, "app.py", *args], cwd=code_dir, env=child_env,
                                   stdout=None if echo else output, stderr=None if echo else subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        if started is not None:
            started.append(process)
        try:
            _wait_until_healthy(process, base_url, output)
            yield base_url
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`: only this one process, which we started."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, output: object) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with _http.open(f"{base_url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    output.seek(0)  # type: ignore[attr-defined]
    text = output.read().decode("utf-8", "replace")[-4000:]  # type: ignore[attr-defined]
    raise AppProcessFailed(f"`python app.py` at {base_url} did not become healthy (exit {process.returncode}):\n"
                           f"{text}")
