"""Start-up as a user meets it: `python app.py` and `python app.py callback` as real processes, and
`.env.example` against every variable the code reads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sandbox.process import app_process, free_port
from tests.support.deployment import LinkFollowingBrowser, page_title
from tests.support.identity import identity_for, start_flow, unique
from tests.support.variables import variables_in_env_example, variables_read_by_the_code
from tools import TOOLS
from tools.tool import oauth2_providers

ROOT = Path(__file__).resolve().parent.parent
DOCS_POINTER = 'README\'s "Configuration" section'
REQUIRED = ("MODEL_API_KEY", "DASHSCOPE_API_KEY", "MODEL_SERVICE_NAME", "IDENTITY_STATE_SECRET",
            "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME", "DINGTALK_CREDENTIAL_PROVIDER_NAME", "CALLBACK_OIDC_CLIENT_ID")


def test_env_example_lists_every_variable_the_code_reads() -> None:
    read = variables_read_by_the_code()
    assert {"MODEL_API_KEY", "IDENTITY_STATE_SECRET", "DINGTALK_SCOPES", "CALLBACK_OIDC_CLIENT_ID"} <= read, \
        "the scan must see the settings readers"
    assert read - variables_in_env_example() == set()


def test_env_example_has_a_block_for_exactly_the_providers_of_the_tools() -> None:
    """The provider block follows `tools.TOOLS`: a provider no tool uses is not asked for."""
    listed = {name.removesuffix("_CREDENTIAL_PROVIDER_NAME") for name in variables_in_env_example()
              if name.endswith("_CREDENTIAL_PROVIDER_NAME")}
    assert listed == {provider.env_prefix for provider in oauth2_providers(TOOLS)}


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
    assert DOCS_POINTER in result.stderr  # the zip has no README: the section is named
    assert "Traceback" not in result.stderr + result.stdout


# Each variable with a value of the wrong form, and a word the message must carry about it.
MALFORMED = {
    "LOG_LEVEL": ("verbose", "DEBUG, INFO"), "LOG_FORMAT": ("xml", "json, text"), "APP_ENV": ("prod", "production"),
    "APP_REDIRECT_URI": ("localhost:8090", "http(s) base URL"), "INBOUND_JWKS_URL": ("ftp://idp/jwks", "http(s) URL"),
    "MODEL_BASE_URL": ("dashscope.aliyuncs.com/v1", "http(s) URL"),
    "DINGTALK_API_BASE": ("https://api.dingtalk.com?x=1", "http(s) base URL"),
    "STS_ENDPOINT": ("https://sts.example.com/some/path", "host[:port]"),
    "AGENT_IDENTITY_DATA_ENDPOINT": ("http://:80", "host[:port]"), "AGENTRUN_CONTROL_ENDPOINT": ("a b", "host[:port]"),
    "AGENT_IDENTITY_REGION_ID": ("Beijing", "region id"), "CORS_ALLOW_ORIGINS": ("chat.example.com", "origins"),
    "INBOUND_JWT_VERIFY": ("maybe", "on, off"), "MAX_HEADER_BYTES": ("16k", "number"),
    "HEADER_TIMEOUT_SECONDS": ("0", ">="), "BODY_TIMEOUT_SECONDS": ("-1", ">="),
    "MAX_CONCURRENT_REQUESTS": ("0", ">="), "SHUTDOWN_GRACE_SECONDS": ("soon", "number"),
    # With CALLBACK_OIDC_CLIENT_ID (set below) the callback fetches ${INBOUND_JWT_ISSUER}/.well-known/...
    "INBOUND_JWT_ISSUER": ("accounts.example.com", "issuer URL"),
}


def test_every_malformed_variable_is_named_in_one_message() -> None:
    result = run_app(env=clean_env(CALLBACK_OIDC_CLIENT_ID="agent-callback",
                                   **{name: value for name, (value, _) in MALFORMED.items()}))
    assert result.returncode == 2, result.stderr
    problems = result.stderr.splitlines()
    for name, (value, words) in MALFORMED.items():
        line = next((p for p in problems if p.startswith(f"  - {name} ")), None)
        assert line is not None and words in line, (name, result.stderr)
    assert DOCS_POINTER in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def valid_env(**values: str) -> dict[str, str]:
    return {"MODEL_API_KEY": "sk-x", "IDENTITY_STATE_SECRET": "s" * 32, "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": "a",
            "DINGTALK_CREDENTIAL_PROVIDER_NAME": "dingtalk", **values}


def problems_of(env: dict[str, str], *, callback: bool = False) -> list[str]:
    from settings import CallbackSettings, ConfigError, Settings
    try:
        CallbackSettings.from_env(env) if callback else Settings.from_env(env, oauth2_providers(TOOLS))
    except ConfigError as error:
        return error.problems
    return []


def test_every_region_follows_one_rule_and_defaults_to_the_one_region() -> None:
    from settings import Settings

    problems = problems_of(valid_env(AGENT_IDENTITY_REGION_ID="Beijing", FC_REGION="cn_hangzhou",
                                     OSS_REGION="Shanghai"))
    for name in ("AGENT_IDENTITY_REGION_ID", "FC_REGION", "OSS_REGION"):
        assert any(p.startswith(f"{name} must be a region id such as cn-beijing") for p in problems), name
    settings = Settings.from_env(valid_env(AGENT_IDENTITY_REGION_ID="cn-shanghai"), oauth2_providers(TOOLS))
    assert {settings.identity.region_id, settings.agent.region_id, settings.tools.region_id,
            settings.tools.oss_region} == {"cn-shanghai"}
    assert settings.tools.sts_endpoint == "sts.cn-shanghai.aliyuncs.com"
    development = valid_env(FC_REGION="cn-hangzhou", APP_ENV="development")
    assert Settings.from_env(development, oauth2_providers(TOOLS)).agent.region_id == "cn-hangzhou"


def test_env_file_is_loaded_into_the_process_environment_without_overriding_it(tmp_path, monkeypatch) -> None:
    """A provider package reads its own key from the process environment: `.env` must reach it there."""
    from settings import load_env

    dotenv = tmp_path / ".env"
    dotenv.write_text("EXAMPLE_PROVIDER_API_KEY=from-dotenv\nLOG_LEVEL=DEBUG\n", encoding="utf-8")
    monkeypatch.delenv("EXAMPLE_PROVIDER_API_KEY", raising=False)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    try:
        env = load_env(str(dotenv))
        assert os.environ["EXAMPLE_PROVIDER_API_KEY"] == env["EXAMPLE_PROVIDER_API_KEY"] == "from-dotenv"
        assert os.environ["LOG_LEVEL"] == env["LOG_LEVEL"] == "WARNING"
    finally:
        os.environ.pop("EXAMPLE_PROVIDER_API_KEY", None)


def test_the_console_instructions_are_the_variables_production_requires() -> None:
    """The packager prints `console_variables`: derived from the settings, so a new required variable (a new
    provider's credential provider) is asked for without another list to edit."""
    from settings import console_variables

    providers = oauth2_providers(TOOLS)
    agent, callback = console_variables(providers), console_variables(providers, callback=True)
    required = {p.split(" ", 1)[0] for p in problems_of({"APP_ENV": "production"}) if " is required" in p}
    assert required and required <= set(agent)
    assert {f"{provider.env_prefix}_CREDENTIAL_PROVIDER_NAME" for provider in oauth2_providers(TOOLS)} <= set(agent)
    assert "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME" not in callback and "MODEL_API_KEY" not in callback
    assert {"IDENTITY_STATE_SECRET", "APP_REDIRECT_URI", "CALLBACK_OIDC_CLIENT_ID"} <= set(callback)


def test_production_requires_the_redirect_uri_and_the_jwks_url_unless_verification_is_waived() -> None:
    for production in ({"FC_REGION": "cn-hangzhou"}, {"APP_ENV": "production"}):
        problems = problems_of(valid_env(**production))
        assert [p.split()[0] for p in problems] == ["APP_REDIRECT_URI", "INBOUND_JWKS_URL", "INBOUND_JWT_ISSUER",
                                                    "INBOUND_JWT_AUDIENCE"], problems
        assert "INBOUND_JWT_VERIFY=off" in problems[1] and "gateway that verifies" in problems[1]
        assert all("other applications are accepted" in p for p in problems[2:])
        # The callback verifies no inbound JWT: the redirect URI and its browser sign-in are its business.
        callback = problems_of(valid_env(**production), callback=True)
        assert [p.split()[0] for p in callback] == ["CALLBACK_OIDC_CLIENT_ID", "APP_REDIRECT_URI"], callback
        assert "Sign-in needed" in callback[0] and "/callback/signed-in" in callback[0]
        signs_in = {"CALLBACK_OIDC_CLIENT_ID": "cb", "INBOUND_JWT_ISSUER": "https://idp.example.com"}
        assert [p.split()[0] for p in problems_of(valid_env(**production, **signs_in), callback=True)] \
            == ["APP_REDIRECT_URI"]
    public = {"APP_REDIRECT_URI": "https://callback.example.com", "INBOUND_JWT_ISSUER": "https://idp.example.com",
              "INBOUND_JWT_AUDIENCE": "agent-app"}
    assert problems_of(valid_env(FC_REGION="cn-hangzhou", INBOUND_JWKS_URL="https://idp/jwks", **public)) == []
    assert problems_of(valid_env(FC_REGION="cn-hangzhou", INBOUND_JWT_VERIFY="off", **public)) == []


def test_production_requires_the_audience_and_issuer_whoever_verifies_the_signature() -> None:
    """Without `aud`, the ID token of any other application of the same IdP would be accepted: by us, or by a
    gateway that checks signatures only."""
    base = valid_env(APP_ENV="production", APP_REDIRECT_URI="https://callback.example.com")
    for verification in ({"INBOUND_JWKS_URL": "https://idp/jwks"}, {"INBOUND_JWT_VERIFY": "off"}):
        no_audience = problems_of({**base, **verification, "INBOUND_JWT_ISSUER": "https://idp.example.com"})
        assert [p.split()[0] for p in no_audience] == ["INBOUND_JWT_AUDIENCE"], no_audience
        no_issuer = problems_of({**base, **verification, "INBOUND_JWT_AUDIENCE": "agent-app"})
        assert [p.split()[0] for p in no_issuer] == ["INBOUND_JWT_ISSUER"], no_issuer
    assert problems_of(valid_env(FC_REGION="cn-hangzhou", APP_ENV="development")) == []  # declared: not production
    assert problems_of(valid_env()) == []  # locally: the local callback and, with a warning, no verification
    both = problems_of(valid_env(INBOUND_JWT_VERIFY="off", INBOUND_JWKS_URL="https://idp/jwks"))
    assert len(both) == 1 and "both set" in both[0]


def test_a_waived_verification_is_logged_at_start_up_before_any_request(fresh_cloud, tmp_path) -> None:
    port = free_port()
    env = {**{k: v for k, v in fresh_cloud.env.items() if k != "INBOUND_JWKS_URL"},
           "APP_ENV": "production", "INBOUND_JWT_VERIFY": "off", "LOG_LEVEL": "INFO"}
    log = tmp_path / "app.log"
    with app_process(env, port=port, log_path=log):
        started = log.read_text()
    lines = [json.loads(line) for line in started.splitlines() if line.startswith("{")]
    warning = next(line for line in lines if "NOT verified" in line.get("message", ""))
    assert warning["level"] == "WARNING" and "gateway that verifies" in warning["message"]
    assert not any(line.get("logger") == "app.request" and line.get("path") != "/health" for line in lines)


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
    assert DOCS_POINTER in result.stderr
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


# Heavy packages by what needs them: the agent (imported by wiring/, in the start-up thread), the agent's HTTP
# framework (the callback's too), and single features (imported at their first use, off the event loop).
FOR_THE_AGENT = ("langchain", "langchain_core", "langgraph", "langsmith", "openai")
FOR_ONE_FEATURE = ("alibabacloud_oss_v2", "authlib", "alibabacloud_agentrun20250910")
_LOADED = """
import sys
{imports}
print(" ".join(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


@pytest.mark.parametrize(("imports", "absent"), [
    ("import app", (*FOR_THE_AGENT, "fastapi", *FOR_ONE_FEATURE)),
    ("import wiring.agent_app", FOR_ONE_FEATURE),
    ("import wiring.callback_app", FOR_THE_AGENT + FOR_ONE_FEATURE),  # the callback deployment: no LangChain
])
def test_start_up_imports_only_what_it_needs_before_the_port_opens(imports: str,
                                                                   absent: tuple[str, ...]) -> None:
    """`python app.py` reads its settings and opens its port before it imports the app (app.py); the agent's
    app imports no SDK that only one feature needs, the callback's app no LangChain or model client
    (bench/RESULTS.md, benchmark 9)."""
    loaded = subprocess.run([sys.executable, "-c", _LOADED.format(imports=imports)], cwd=ROOT, text=True,
                            capture_output=True, timeout=120, check=True).stdout.split()
    assert set(absent).isdisjoint(loaded), sorted(set(absent) & set(loaded))
