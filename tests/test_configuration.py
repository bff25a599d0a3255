"""Start-up as a user meets it: `python app.py` and `python app.py callback` as real processes, and
`.env.example` against every variable the code reads."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from identity.settings import IdentitySettings
from tests.test_callback import start_flow
from tests.test_identity_support import answer_consent, identity_for, unique

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_SOURCES = [ROOT / "app.py", ROOT / "config.py",
                   *[path for package in ("agent", "identity", "tools") for path in (ROOT / package).glob("*.py")]]
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
READ_METHODS = {"str", "first", "int", "float", "bool", "list", "get", "getenv"}
REQUIRED = ("MODEL_API_KEY", "DASHSCOPE_API_KEY", "MODEL_SERVICE_NAME", "IDENTITY_STATE_SECRET",
            "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME", "DINGTALK_CREDENTIAL_PROVIDER_NAME", "CALLBACK_USER_JWT")


def variables_read_by_the_code() -> set[str]:
    """Every NAME in `reader.str("NAME")`, `read.first("A", "B")`, `env.get("NAME")` and the like."""
    names: set[str] = set()
    for path in RUNTIME_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in READ_METHODS:
                names.update(arg.value for arg in node.args
                             if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and ENV_NAME.match(arg.value))
    return names


def variables_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return {match.group(1) for match in re.finditer(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)}


def test_env_example_lists_every_variable_the_code_reads() -> None:
    read = variables_read_by_the_code()
    assert {"MODEL_API_KEY", "IDENTITY_STATE_SECRET", "DINGTALK_SCOPES", "CALLBACK_USER_JWT"} <= read, \
        "the scan must see the settings readers"
    assert read - variables_in_env_example() == set()


def clean_env(**values: str) -> dict[str, str]:
    """A process environment with no proxies and no real configuration (empty values beat a local `.env`)."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**env, **{name: "" for name in REQUIRED}, "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1", **values}


def run_app(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "app.py"), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_python_app_py_names_every_missing_and_invalid_variable() -> None:
    result = run_app(env=clean_env(MODEL_TIMEOUT_SECONDS="soon", AUTHORIZATION_TIMEOUT_SECONDS="-1"))
    assert result.returncode == 2
    for name in ("MODEL_API_KEY", "IDENTITY_STATE_SECRET", "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME",
                 "DINGTALK_CREDENTIAL_PROVIDER_NAME", "MODEL_TIMEOUT_SECONDS", "AUTHORIZATION_TIMEOUT_SECONDS"):
        assert name in result.stderr
    assert "README.md#configuration" in result.stderr and ".env.example" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_bad_server_variable_does_not_hide_the_others() -> None:
    result = run_app(env=clean_env(PORT="not-a-port"))
    assert result.returncode == 2
    for name in ("PORT", "MODEL_API_KEY", "IDENTITY_STATE_SECRET"):
        assert name in result.stderr
    assert "README.md#configuration" in result.stderr and ".env.example" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_python_app_py_callback_names_every_missing_variable() -> None:
    result = run_app("callback", env=clean_env())
    assert result.returncode == 2
    for name in ("CALLBACK_USER_JWT", "IDENTITY_STATE_SECRET", "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_standalone_callback_listens_where_app_redirect_uri_points() -> None:
    from identity.callback import standalone_address

    def address(redirect_uri: str) -> tuple[int, str]:
        return standalone_address(IdentitySettings.from_env({
            "APP_REDIRECT_URI": redirect_uri, "IDENTITY_STATE_SECRET": "s" * 32,
            "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": "agent"}))

    assert address("http://localhost:8090") == (8090, "/callback")
    assert address("http://127.0.0.1:8123/agent/") == (8123, "/agent/callback")
    assert address("https://agent.example.com") == (8090, "/callback")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def standalone_callback_process(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "callback"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


async def wait_until_serving(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else "exited"
            try:
                return await http.get(url)
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the standalone callback did not start"
                await asyncio.sleep(0.1)


async def test_python_app_py_callback_completes_the_user_s_authorization(fresh_cloud) -> None:
    """The helper as a separate process: it knows nothing of the agent's pending flow, only the state's
    signature (same IDENTITY_STATE_SECRET) and the user's JWT given at start."""
    jwt = fresh_cloud.issue_user_jwt(unique("helper"))
    port = free_port()
    env = clean_env(**{**fresh_cloud.env, "APP_REDIRECT_URI": f"http://127.0.0.1:{port}",
                       "CALLBACK_USER_JWT": jwt, "LOG_LEVEL": "INFO"})
    identity = identity_for(fresh_cloud)
    try:
        with standalone_callback_process(env) as process:
            unknown = await wait_until_serving(f"http://127.0.0.1:{port}/nothing", process)
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
            task, link = await start_flow(identity, fresh_cloud, jwt)
            redirect = await answer_consent(link.url)
            async with httpx.AsyncClient() as http:
                page = await http.get(f"http://127.0.0.1:{port}/callback", params=redirect)
                replay = await http.get(f"http://127.0.0.1:{port}/callback", params=redirect)
            token = await asyncio.wait_for(task, 10)
            process.terminate()
            output, _ = process.communicate(timeout=15)
    finally:
        await identity.aclose()
    assert page.status_code == 200 and "Authorization complete" in page.text
    assert replay.status_code == 409
    assert fresh_cloud.dingtalk_tokens.get(token).valid
    assert "Authorization callback on http://127.0.0.1:%d/callback" % port in output
    assert jwt not in output and token not in output and redirect["session_uri"] not in output
