"""Start-up as a user meets it: `python app.py` and `python app.py callback` as real processes, and
`.env.example` against every variable the code reads."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sandbox.process import app_process, free_port
from tests.deployment import LinkFollowingBrowser, page_title
from tests.test_callback import start_flow
from tests.test_identity_support import identity_for, unique
from tools.oauth2 import registered_providers
from tools.settings import ProviderSettings

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("agent", "identity", "tools", "server")
RUNTIME_SOURCES = [ROOT / "app.py", ROOT / "config.py",
                   *[path for package in RUNTIME_PACKAGES for path in (ROOT / package).glob("*.py")]]
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
READ_METHODS = {"str", "first", "int", "float", "bool", "list", "get", "getenv"}
REQUIRED = ("MODEL_API_KEY", "DASHSCOPE_API_KEY", "MODEL_SERVICE_NAME", "IDENTITY_STATE_SECRET",
            "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME", "DINGTALK_CREDENTIAL_PROVIDER_NAME", "CALLBACK_OIDC_CLIENT_ID")


def variables_read_by_the_code() -> set[str]:
    """Every NAME in `reader.str("NAME")`, `read.first("A", "B")`, `env.get("NAME")` and the like, and the
    variables of every OAuth2 provider a registered tool uses (named after its prefix)."""
    names = {name for provider in registered_providers() for name in ProviderSettings.variables(provider)}
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
    assert {"MODEL_API_KEY", "IDENTITY_STATE_SECRET", "DINGTALK_SCOPES", "CALLBACK_OIDC_CLIENT_ID"} <= read, \
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


def test_two_model_routes_at_once_is_a_start_up_error_naming_both() -> None:
    result = run_app(env=clean_env(MODEL_SERVICE_NAME="my-model-service", MODEL_BASE_URL="https://example.com/v1",
                                   MODEL_API_KEY="sk-x", IDENTITY_STATE_SECRET="s" * 32,
                                   AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME="agent",
                                   DINGTALK_CREDENTIAL_PROVIDER_NAME="dingtalk"))
    assert result.returncode == 2
    problem = next(line for line in result.stderr.splitlines() if "MODEL_SERVICE_NAME" in line)
    assert "MODEL_BASE_URL" in problem and "MODEL_API_KEY" in problem and "choose one" in problem


def test_a_bad_server_variable_does_not_hide_the_others() -> None:
    result = run_app(env=clean_env(PORT="not-a-port"))
    assert result.returncode == 2
    for name in ("PORT", "MODEL_API_KEY", "IDENTITY_STATE_SECRET"):
        assert name in result.stderr
    assert "README.md#configuration" in result.stderr and ".env.example" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_python_app_py_callback_names_every_missing_variable_and_only_its_own() -> None:
    result = run_app("callback", env=clean_env(PORT="not-a-port", CALLBACK_OIDC_CLIENT_ID="agent-callback"))
    assert result.returncode == 2
    for name in ("IDENTITY_STATE_SECRET", "PORT", "INBOUND_JWT_ISSUER"):
        assert name in result.stderr
    # The callback acts as no workload identity and runs no model or tool: it needs none of their variables.
    for name in ("AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME", "MODEL_API_KEY", "DINGTALK_CREDENTIAL_PROVIDER_NAME"):
        assert name not in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


async def test_python_app_py_callback_serves_many_users_on_the_platform_port(fresh_cloud, tmp_path) -> None:
    """The callback as its own process, on FC_CUSTOM_LISTEN_PORT as Function Compute sets it: `/health`, and
    two users' flows completed in two browsers that only follow links (no JWT was given to the process)."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    fresh_cloud.register_return_url(f"{public}/callback")
    only_its_variables = {name: value for name, value in fresh_cloud.env.items()
                          if not name.startswith(("MODEL_", "DINGTALK_", "AGENT_IDENTITY_WORKLOAD"))}
    env = {**only_its_variables, "APP_REDIRECT_URI": public, "FC_CUSTOM_LISTEN_PORT": str(port), "LOG_LEVEL": "INFO"}
    waiting = identity_for(fresh_cloud, env={"APP_REDIRECT_URI": public})
    log = tmp_path / "callback.log"
    tokens, pages, secrets_seen = [], [], []
    try:
        with app_process(env, "callback", port=port, log_path=log) as base:
            async with httpx.AsyncClient(trust_env=False) as http:
                health = await http.get(f"{base}/health")
                unknown = await http.get(f"{base}/nothing")
            for name in (unique("cb-ann"), unique("cb-ben")):
                jwt = fresh_cloud.issue_user_jwt(name)
                task, link = await start_flow(waiting, fresh_cloud, jwt)
                browser = LinkFollowingBrowser()
                pages.append(await browser.approve_and_sign_in(link.url, name))
                await browser.aclose()
                tokens.append(await asyncio.wait_for(task, 10))
                secrets_seen += [jwt, tokens[-1]]
    finally:
        await waiting.aclose()
    output = log.read_text()
    assert health.json() == {"status": "ok"}
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert [page_title(page) for page in pages] == ["Authorization complete"] * 2
    assert all(fresh_cloud.dingtalk_tokens.get(token).valid for token in tokens)
    assert f"127.0.0.1:{port}" in output and "Authorization completed" in output
    assert not [secret for secret in secrets_seen if secret in output]
    assert "session_uri" not in output and "state=" not in output
