"""`./scripts/smoke-cloud` skips without credentials, and passes every step against the emulated cloud (the
same code then runs against the real one): the agent's variables, a user JWT, and the callback deployed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulators import start_local_cloud
from sandbox.process import app_process, free_port
from sandbox.smoke_cloud import main

ROOT = Path(__file__).resolve().parent.parent


def test_without_credentials_it_skips_and_says_what_is_missing() -> None:
    result = subprocess.run([sys.executable, "-m", "sandbox.smoke_cloud"], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"},
                            timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("SKIPPED:") and "SMOKE_USER_JWT" in result.stdout


def test_every_step_passes_against_the_emulated_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    with start_local_cloud() as cloud:
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        cloud.register_return_url(f"{public}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": public, "SMOKE_USER_JWT": cloud.issue_user_jwt("smoke-user")}
        with app_process(env, "callback", port=port):
            code = main(env)
    output = capsys.readouterr().out
    steps = [line.split()[1] for line in output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert code == 0, output
    assert steps == ["configuration", "identity", "workload", "STS", "DingTalk", "callback", "model"], output
    assert "open to authorize: http" in output  # a new user: the link to open is printed
    assert env["SMOKE_USER_JWT"] not in output
