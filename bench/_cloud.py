"""Processes the benchmarks run against: the local cloud (emulators) and the app server, each its own process.

Separate processes keep the load driver, the emulators and the server from sharing one GIL, as they would not
share one in production. Everything started here binds 127.0.0.1 on a free port, writes only into a temporary
directory, and is stopped on exit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sandbox.process import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# The latencies the benchmarks are specified against (issue 7): the emulators add them to every call.
IDENTITY_LATENCY_MS = 50  # Agent Identity and STS
DINGTALK_LATENCY_MS = 100
MODEL_FIRST_TOKEN_MS = 200


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: no proxies, no ECS metadata probing, no .pyc files written."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true", "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONPATH": str(ROOT)})
    env.update(extra or {})
    return env


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.stat().st_size > 0):
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.args!r} was not ready within {timeout_s} s")
        time.sleep(0.02)


@dataclass
class Cloud:
    """The running emulators: their ready-file info, and controls over HTTP."""

    info: dict[str, Any]
    info_path: Path
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        """The product's environment: HTTPS endpoints, and SSL_CERT_FILE naming the emulators' CA."""
        return dict(self.info["env"])

    def url(self, name: str) -> str:
        return self.info[f"{name}_url"]

    def browser_url(self, name: str) -> str:
        return self.info.get(f"{name}_browser_url") or self.url(name)

    @functools.cached_property
    def _http(self) -> httpx.Client:
        return httpx.Client(trust_env=False, verify=ssl.create_default_context(cafile=self.info["ca_file"]),
                            timeout=30)

    def set_faults(self, name: str, **faults: Any) -> None:
        self._http.post(f"{self.url(name)}/emulator/faults", json=faults).raise_for_status()

    def set_specified_latencies(self) -> None:
        """Identity 50 ms (Agent Identity and STS), DingTalk 100 ms, model time to first token 200 ms."""
        self.set_faults("agent_identity", latency_ms=IDENTITY_LATENCY_MS)
        self.set_faults("sts", latency_ms=IDENTITY_LATENCY_MS)
        self.set_faults("dingtalk", latency_ms=DINGTALK_LATENCY_MS)
        self.set_faults("model", latency_ms=MODEL_FIRST_TOKEN_MS)

    def reset(self) -> None:
        for name in ("idp", "agent_identity", "sts", "dingtalk", "model"):
            self._http.post(f"{self.url(name)}/emulator/reset").raise_for_status()

    def calls(self, name: str) -> dict[str, int]:
        return self._http.get(f"{self.url(name)}/emulator/calls").json()

    def connections(self, name: str) -> int:
        """How many client connections `name` has seen since the last reset."""
        return self._http.get(f"{self.url(name)}/emulator/connections").json()["connections"]

    def user_jwt(self, sub: str) -> str:
        response = self._http.post(f"{self.url('idp')}/token",
                                   data={"grant_type": "password", "username": sub})
        response.raise_for_status()
        return response.json()["id_token"]


@contextlib.contextmanager
def local_cloud(return_urls: tuple[str, ...] = ()) -> Iterator[Cloud]:
    """`python -m emulators` in its own process, for as long as the block runs."""
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        info_path = Path(tmp) / "ready.json"
        argv = [PYTHON, "-m", "emulators", "--ready-file", str(info_path)]
        for url in return_urls:
            argv += ["--return-url", url]
        log_path = Path(tmp) / "emulators.log"  # their banner and warnings; shown only if they fail to start
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=tmp, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for_file(info_path, process)
            except (RuntimeError, TimeoutError):
                print(log_path.read_text(errors="replace"), file=sys.stderr)
                raise
            time.sleep(0.05)  # the file is written in one go, but give the writer a moment to close it
            info = json.loads(info_path.read_text())
            # Trust the emulators' CA as an operator trusts a corporate CA: this process (which runs identity/
            # and tools/ in-process) and every child started with clean_env() reach them over HTTPS.
            os.environ["SSL_CERT_FILE"] = info["ca_file"]
            yield Cloud(info, info_path, process)
        finally:
            stop_process(process)


def run_json_child(module: str, *args: str, timeout_s: float = 900) -> dict[str, Any]:
    """Run `python -m module args...` and return the JSON after its `RESULT ` line (stderr passes through)."""
    completed = subprocess.run([PYTHON, "-m", module, *args], cwd=ROOT, env=clean_env(),
                               stdout=subprocess.PIPE, timeout=timeout_s, check=False)
    lines = [line for line in completed.stdout.decode().splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{module} failed with exit code {completed.returncode}")
    return json.loads(lines[-1][len("RESULT "):])


def write_json_temp(data: Any, directory: str) -> str:
    path = Path(directory) / f"data-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(data))
    return str(path)


@dataclass
class AppServer:
    """`python app.py` in its own process, serving on 127.0.0.1."""

    url: str
    process: subprocess.Popen[bytes]
    started_s: float  # process start to first answered /health (the port opens before the app is built)

    @property
    def chat_url(self) -> str:
        return f"{self.url}/openai/v1/chat/completions"


@contextlib.contextmanager
def app_server(cloud_env: Mapping[str, str], port: int | None = None,
               extra_env: Mapping[str, str] | None = None, *, code_dir: Path | None = None,
               python: str = PYTHON, wait_for_app: bool = True,
               args: tuple[str, ...] = ()) -> Iterator[AppServer]:
    """Serve the product against the emulators; waits for `GET /health` and times that start, then (unless
    `wait_for_app` is false) for the app built behind it (server/starting.py), so a benchmark measures the
    app, not its start. With `code_dir` (an unpacked zip), `python -B -E -s -S app.py` runs there, so only
    the zip's contents can be imported and no `.pyc` is written (-E ignores PYTHONDONTWRITEBYTECODE, so -B it
    is). `args`: after `app.py`, e.g. `("callback",)`."""
    port = port or free_port()
    env = clean_env({**cloud_env, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "WARNING",
                     **(extra_env or {})})
    env.pop("FC_CUSTOM_LISTEN_PORT", None)
    with tempfile.TemporaryDirectory(prefix="bench-app-") as workdir:
        root = Path(os.environ.get("BENCH_APP_ROOT") or ROOT)  # another checkout, for side-by-side runs
        argv = [python, "-B", "-E", "-s", "-S", "app.py", *args] if code_dir else \
            [python, str(root / "app.py"), *args]
        began = time.perf_counter()
        process = subprocess.Popen(argv, cwd=code_dir or workdir, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"app.py exited with {process.returncode} before it was ready")
                try:
                    if httpx.get(f"{url}/health", trust_env=False, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - began > 60:
                    raise TimeoutError("app.py did not answer /health within 60 s")
                time.sleep(0.01)
            started_s = time.perf_counter() - began
            if wait_for_app:  # any other path waits for the app; without a token it answers 401
                httpx.get(f"{url}/openai/v1/models", trust_env=False, timeout=60)
            yield AppServer(url, process, started_s)
        finally:
            stop_process(process)
