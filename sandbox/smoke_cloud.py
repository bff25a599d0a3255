"""`./scripts/smoke-cloud`: the documented flow against the real services, step by step, for an operator.

Run it with the agent's variables (the same `.env` or environment as the deployment) plus `SMOKE_USER_JWT`, a
fresh JWT of a test user from your IdP. Each step uses the product's own code and prints PASS or FAIL with
what went wrong, so a wrong assumption about a real service (docs/services.md) shows up in minutes:

  1. configuration   every variable, checked as at start-up
  2. identity provider  discovery, JWKS, and the user's JWT verified as the agent verifies it
  3. workload token  GetWorkloadAccessTokenForJWT with that JWT
  4. STS             AssumeRoleForWorkloadIdentity, then STS GetCallerIdentity with those credentials
  5. DingTalk consent GetResourceOAuth2Token: the vaulted token, or the authorization link to open
  6. callback        `${APP_REDIRECT_URI}/health` and the IdP's authorization endpoint for browser sign-in
  7. model and agent one chat through the real app (`create_app`), served on 127.0.0.1

Without credentials (no SMOKE_USER_JWT, or no AccessKey in the environment) it says what is missing and
exits 0, skipping everything: it never calls a service it was not pointed at.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx
from alibabacloud_sts20150401.client import Client as StsClient

from outbound import sdk_config
from identity.credentials import StsCredential
from outbound import sdk_call
from settings.tools import ToolSettings

NEEDED = ("SMOKE_USER_JWT", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")
PROMPT = "Who am I on Alibaba Cloud?"


@dataclass
class Results:
    lines: list[str] = field(default_factory=list)
    failed: int = 0

    def report(self, status: str, step: str, detail: str) -> None:
        self.failed += status == "FAIL"
        line = f"{status:4}  {step:18} {detail}"
        self.lines.append(line)
        print(line, flush=True)


async def run(env: Mapping[str, str], results: Results) -> None:
    from wiring.agent_app import create_app
    from settings import ConfigError
    from identity.context import RequestContext, bind_request_context
    from identity.errors import AuthorizationPending, IdentityError
    from identity.service import AgentIdentity
    from settings.identity import IdentitySettings

    async def step(name: str, action: Callable[[], Awaitable[str]]) -> bool:
        started = time.perf_counter()
        try:
            detail = await action()
        except (IdentityError, ConfigError) as error:
            results.report("FAIL", name, str(error).replace("\n", " "))
            return False
        except Exception as error:  # noqa: BLE001 - an operator needs the type and the step, not a crash
            results.report("FAIL", name, f"{type(error).__name__}: {str(error)[:300]}")
            return False
        results.report("PASS", name, f"{detail} ({(time.perf_counter() - started) * 1000:.0f} ms)")
        return True

    settings = IdentitySettings.from_env(env) if await step("configuration", lambda: _configuration(env)) else None
    if settings is None:
        return
    identity = AgentIdentity(settings)
    try:
        caller = None

        async def verify_user() -> str:
            nonlocal caller
            await _discovery(settings.jwt_issuer)
            caller = await identity.authenticate(f"Bearer {env['SMOKE_USER_JWT']}")
            return f"sub {caller.sub!r}" + ("" if settings.jwks_url else " (signature NOT checked: no INBOUND_JWKS_URL)")

        if not await step("identity provider", verify_user) or caller is None:
            return
        bind_request_context(RequestContext(caller=caller, session_id="smoke", request_id="smoke",
                                            wait_for_authorization=False))

        async def workload() -> str:
            await identity.workload_access_token()
            return f"workload identity {settings.workload_identity_name!r}"

        async def sts() -> str:
            credential = await identity.sts_credential()
            return await _caller_identity(env, credential)

        async def dingtalk() -> str:
            provider = env.get("DINGTALK_CREDENTIAL_PROVIDER_NAME", "")
            scopes = (env.get("DINGTALK_SCOPES") or "openid corpid").split()
            try:
                await identity.oauth2_token(provider=provider, scopes=scopes, purpose="smoke test")
            except AuthorizationPending as pending:
                return f"not authorized yet; open to authorize: {pending.url}"
            return "a DingTalk token is in the vault for this user"

        if await step("workload token", workload):
            await step("STS", sts)
            await step("DingTalk consent", dingtalk)
    finally:
        await identity.aclose()
    await step("callback", lambda: _callback(settings))
    await step("model and agent", lambda: _chat(create_app(dict(env)), env["SMOKE_USER_JWT"]))


async def _configuration(env: Mapping[str, str]) -> str:
    from wiring.agent_app import create_app

    create_app(dict(env))  # raises ConfigError naming every problem
    return "every variable is valid"


async def _discovery(issuer: str) -> dict:
    if not issuer:
        return {}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
    answer.raise_for_status()
    return answer.json()


async def _caller_identity(env: Mapping[str, str], credential: StsCredential) -> str:
    """STS GetCallerIdentity with the workload identity's credentials, configured as the tools configure it."""
    settings = ToolSettings.from_env(env)
    client = StsClient(sdk_config(credential.credential_client(), settings.region_id, settings.sts_endpoint,
                                  timeout_seconds=settings.http_timeout_seconds))
    answer = await sdk_call(client.get_caller_identity)
    return f"the workload identity's role is {answer.body.arn}"


async def _callback(settings) -> str:  # noqa: ANN001 - IdentitySettings
    async with httpx.AsyncClient(timeout=10) as http:
        health = await http.get(f"{settings.redirect_uri}/health")
    if health.status_code != 200:
        raise RuntimeError(f"{settings.redirect_uri}/health answered {health.status_code}: is the callback "
                           "deployed there (python3 app.py callback) and reachable without a JWT?")
    if not settings.signin_client_id:
        raise RuntimeError("CALLBACK_OIDC_CLIENT_ID is not set: the callback cannot sign browsers in")
    metadata = await _discovery(settings.jwt_issuer)
    if "authorization_endpoint" not in metadata:
        raise RuntimeError(f"{settings.jwt_issuer} publishes no authorization_endpoint")
    return f"{settings.callback_url} is up; browsers sign in at {metadata['authorization_endpoint']}"


async def _chat(app, jwt: str) -> str:  # noqa: ANN001 - a FastAPI app
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://smoke",
                                                                   timeout=120) as http:
        answer = await http.post("/openai/v1/chat/completions", headers={"Authorization": f"Bearer {jwt}"},
                                 json={"messages": [{"role": "user", "content": PROMPT}]})
    body = answer.json()
    if answer.status_code != 200:
        raise RuntimeError(f"HTTP {answer.status_code}: {body.get('error', {}).get('message')}")
    text = body["choices"][0]["message"]["content"] or ""
    return f"the agent answered {len(text)} characters: {text[:120]!r}"


def main(env: Mapping[str, str] | None = None) -> int:
    from settings import load_env

    values = dict(load_env() if env is None else env)
    missing = [name for name in NEEDED if not values.get(name)]
    if missing:
        print("SKIPPED: the cloud smoke test needs real credentials; set " + ", ".join(missing)
              + " (see sandbox/smoke_cloud.py).")
        return 0
    results = Results()
    try:
        asyncio.run(run(values, results))
    except Exception:  # noqa: BLE001 - say where the script itself broke
        traceback.print_exc()
        return 2
    print(f"\n{len(results.lines) - results.failed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    sys.exit(main())
