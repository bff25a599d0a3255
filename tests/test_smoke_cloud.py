"""`./scripts/smoke-cloud` exits non-zero when it skips, and passes every step against the emulated cloud
(the same code then runs against the real one): the agent's variables forced to production, a user JWT, the
callback and the agent deployed as their own processes (`python app.py callback`, `python app.py`) and called
over HTTP."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from emulators import start_local_cloud
from emulators.chosen import CODE_BAD_WORKLOAD_TOKEN, MAX_CUSTOM_STATE
from settings.identity import IdentitySettings
from sandbox.process import app_process, free_port
from sandbox.smoke_cloud import SKIPPED, main, token_lifetime_probe

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["configuration", "identity", "workload", "STS", "DingTalk", "CustomState", "callback", "deployed"]


def test_without_a_user_jwt_it_skips_says_what_is_missing_and_exits_non_zero() -> None:
    result = subprocess.run([sys.executable, "-m", "sandbox.smoke_cloud"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"})
    assert result.returncode == SKIPPED != 0
    assert result.stdout.startswith("SKIPPED:") and "SMOKE_USER_JWT" in result.stdout


def steps_of(output: str) -> list[tuple[str, str]]:
    return [(line.split()[0], line.split()[1]) for line in output.splitlines()
            if line.startswith(("PASS", "FAIL", "SKIP"))]


def test_every_step_passes_against_the_emulated_cloud_and_the_agent_deployed_there(
        capsys: pytest.CaptureFixture[str]) -> None:
    with start_local_cloud() as cloud:
        callback_port, agent_port = free_port(), free_port()
        public = f"http://127.0.0.1:{callback_port}"
        cloud.register_return_url(f"{public}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": public, "SMOKE_USER_JWT": cloud.issue_user_jwt("smoke-user")}
        with app_process(env, "callback", port=callback_port), app_process(env, port=agent_port) as agent:
            code = main(["--agent-url", agent], env)
    output = capsys.readouterr().out
    assert code == 0, output
    assert steps_of(output) == [("PASS", step) for step in STEPS], output
    assert "open to authorize: http" in output  # a new user: the link to open is printed
    assert "401 without a JWT" in output and "DingTalk: the authorization link came: http" in output
    refused = MAX_CUSTOM_STATE + 1
    assert f"CustomState limit: {MAX_CUSTOM_STATE:,} characters ({refused:,} refused with HTTP 400" in output
    assert "workload access token lifetime: " in output
    assert env["SMOKE_USER_JWT"] not in output


def test_production_is_forced_and_a_missing_agent_url_or_access_key_is_a_skip_not_a_pass(
        capsys: pytest.CaptureFixture[str]) -> None:
    with start_local_cloud() as cloud:
        env = {**cloud.env, "SMOKE_USER_JWT": cloud.issue_user_jwt("smoke-user")}
        unconfigured = main([], {**env, "APP_REDIRECT_URI": ""})  # required in production
        first = capsys.readouterr().out
        keyless = {k: v for k, v in env.items() if not k.startswith("ALIBABA_CLOUD_ACCESS_KEY")}
        port = free_port()
        keyless["APP_REDIRECT_URI"] = f"http://127.0.0.1:{port}"
        with app_process(keyless, "callback", port=port):
            code = main(["--no-custom-state-probe"], keyless)
    output = capsys.readouterr().out
    assert unconfigured == 1 and "FAIL  configuration" in first and "APP_REDIRECT_URI is required" in first
    assert code == SKIPPED, output
    assert ("SKIP", "workload") in steps_of(output) and ("SKIP", "deployed") in steps_of(output)
    assert "agentidentitydata:GetWorkloadAccessTokenForJWT" in output and "no --agent-url" in output


async def test_the_token_lifetime_probe_reuses_one_workload_token_until_the_service_refuses_it() -> None:
    """For a workload token that is not a JWT (the emulator's), the probe measures its life by use; here the
    emulator expires every token half a second in, as the real service does after its unpublished lifetime."""
    with start_local_cloud() as cloud:
        env = {**cloud.env, "SMOKE_USER_JWT": cloud.issue_user_jwt("probe-user")}
        settings = IdentitySettings.from_env(env)
        probe = asyncio.create_task(token_lifetime_probe(settings, env, limit_seconds=30, interval_seconds=0.1))
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as http:
            (await http.post(f"{cloud.url('agent_identity')}/emulator/expire-tokens")).raise_for_status()
        measured = await asyncio.wait_for(probe, 15)
    status, code = CODE_BAD_WORKLOAD_TOKEN
    expected = rf"between [01] and [012] s \(refused with HTTP {status} {re.escape(code)}\)"
    assert re.fullmatch(expected, measured), measured
