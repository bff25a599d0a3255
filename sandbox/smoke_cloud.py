"""`./scripts/smoke-cloud --agent-url URL`: the deployment against the real services, step by step, for an
operator.

Run it with the deployment's variables (the same `.env` or environment as the agent) plus `SMOKE_USER_JWT`, a
fresh ID token of a test user (`./scripts/get-jwt`), and an AccessKey of a RAM user allowed the actions in
`RAM_ACTIONS` (`ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET`; never the agent's). Each step prints PASS, FAIL or
SKIP with what went wrong, so a wrong assumption about a real service (docs/services.md) shows up in minutes:

  1. configuration      every variable, checked as in production (APP_ENV=production is forced)
  2. identity provider  discovery, JWKS, and the user's JWT verified as the agent verifies it
  3. workload token     GetWorkloadAccessTokenForJWT with that JWT; measures the token's lifetime
  4. STS                AssumeRoleForWorkloadIdentity, then STS GetCallerIdentity with those credentials
  5. DingTalk consent   GetResourceOAuth2Token: the vaulted token, or the authorization link to open
  6. CustomState limit  GetResourceOAuth2Token with ever longer CustomState until the service refuses
     (token lifetime    with --probe-token-lifetime: one workload token reused every 30 s until refused)
  7. callback           `${APP_REDIRECT_URI}/health` and the IdP's authorization endpoint for browser sign-in
  8. deployed agent     the agent at --agent-url: no JWT gets 401, a plain chat with the JWT, then the
                        DingTalk prompt streamed up to the authorization link (or the tool's result)

Exit status: 0 every step passed; 1 a step failed; 2 the script itself broke; 3 something was skipped (no
SMOKE_USER_JWT, no AccessKey, no --agent-url): a skipped check proves nothing, so it never reads as success.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_agentidentitydata20251127.models import (GetResourceOAuth2TokenRequest,
                                                            GetWorkloadAccessTokenForJWTRequest)
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_credentials.models import Config as CredentialConfig
from alibabacloud_sts20150401.client import Client as StsClient

from identity.credentials import StsCredential
from outbound import sdk_call, sdk_config
from settings.identity import IdentitySettings
from sandbox.chat_stream import chat_chunks
from settings.tools import ToolSettings

if TYPE_CHECKING:
    from identity.service import AgentIdentity

# The AccessKey this script signs with stands in for the instance role, on the operator's machine.
ACCESS_KEY = ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET")
RAM_ACTIONS = (
    "agentidentitydata:GetWorkloadAccessTokenForJWT",  # step 3
    # steps 5, 6 if AGENT_IDENTITY_USE_STS=false (else the role's), and --probe-token-lifetime
    "agentidentitydata:GetResourceOAuth2Token",
)
# AssumeRoleForWorkloadIdentity is anonymous (the workload token is the credential) and STS GetCallerIdentity
# needs no permission: step 4 needs no action of its own.
PLAIN_PROMPT = "Hello! Answer with one short sentence."
DINGTALK_PROMPT = "帮我写入“smoke test”到钉钉文档，文档ID：{doc}"
CUSTOM_STATE_PROBE_MAX = 65536  # characters; beyond this the limit is reported as "at least"
SKIPPED, FAILED, BROKEN = 3, 1, 2


@dataclass
class Results:
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"PASS": 0, "FAIL": 0, "SKIP": 0})
    measured: dict[str, str] = field(default_factory=dict)

    def report(self, status: str, step: str, detail: str) -> None:
        self.counts[status] += 1
        line = f"{status:4}  {step:18} {detail}"
        self.lines.append(line)
        print(line, flush=True)

    @property
    def exit_code(self) -> int:
        return FAILED if self.counts["FAIL"] else SKIPPED if self.counts["SKIP"] else 0


class Skip(Exception):
    """The step cannot run with what was given; the message says what is missing."""


async def run(env: Mapping[str, str], results: Results, *, agent_url: str = "", dingtalk_doc: str = "doc123",
              probe_custom_state: bool = True, probe_token_seconds: float = 0.0) -> None:
    from identity.context import RequestContext, bind_request_context
    from identity.errors import AuthorizationPending, IdentityError
    from identity.service import AgentIdentity
    from settings import ConfigError

    async def step(name: str, action: Callable[[], Awaitable[str]]) -> bool:
        started = time.perf_counter()
        try:
            detail = await action()
        except Skip as skip:
            results.report("SKIP", name, str(skip))
            return False
        except (IdentityError, ConfigError) as error:
            results.report("FAIL", name, str(error).replace("\n", " "))
            return False
        except Exception as error:  # noqa: BLE001 - an operator needs the type and the step, not a crash
            results.report("FAIL", name, f"{type(error).__name__}: {str(error)[:300]}")
            return False
        results.report("PASS", name, f"{detail} ({(time.perf_counter() - started) * 1000:.0f} ms)")
        return True

    production = {**env, "APP_ENV": "production"}  # INBOUND_JWKS_URL and APP_REDIRECT_URI are required there
    if not await step("configuration", lambda: _configuration(production)):
        return
    settings = IdentitySettings.from_env(production)
    identity = AgentIdentity(settings)
    signed = all(env.get(name) for name in ACCESS_KEY)
    without_key = (f"no AccessKey: set {' and '.join(ACCESS_KEY)} (a RAM user allowed "
                   f"{', '.join(RAM_ACTIONS)})")
    try:
        caller = None

        async def verify_user() -> str:
            nonlocal caller
            await _discovery(settings.jwt_issuer)
            caller = await identity.authenticate(f"Bearer {env['SMOKE_USER_JWT']}")
            unchecked = "" if settings.jwks_url else " (signature NOT checked: no INBOUND_JWKS_URL)"
            return f"sub {caller.sub!r}{unchecked}"

        if await step("identity provider", verify_user) and caller is not None:
            bind_request_context(RequestContext(caller=caller, session_id="smoke", request_id="smoke",
                                                wait_for_authorization=False))

            async def workload() -> str:
                if not signed:
                    raise Skip(without_key)
                lifetime = token_lifetime(await identity.workload_access_token())
                results.measured["workload access token lifetime"] = lifetime
                return f"workload identity {settings.workload_identity_name!r}; token lifetime: {lifetime}"

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

            async def custom_state() -> str:
                if not probe_custom_state:
                    raise Skip("--no-custom-state-probe")
                limit = await custom_state_limit(identity, settings, env)
                results.measured["CustomState limit"] = limit
                return limit

            async def lifetime() -> str:
                measured = await token_lifetime_probe(settings, env, limit_seconds=probe_token_seconds)
                results.measured["workload access token lifetime (probe)"] = measured
                return measured

            if await step("workload token", workload):
                await step("STS", sts)
                await step("DingTalk consent", dingtalk)
                await step("CustomState limit", custom_state)
                if probe_token_seconds > 0:
                    await step("token lifetime", lifetime)
            else:
                for name in ("STS", "DingTalk consent", "CustomState limit"):
                    results.report("SKIP", name, "needs the workload token")
    finally:
        await identity.aclose()
    await step("callback", lambda: _callback(settings))
    await step("deployed agent", lambda: deployed_agent(agent_url, env["SMOKE_USER_JWT"], dingtalk_doc))


async def _configuration(env: Mapping[str, str]) -> str:
    from wiring.agent_app import create_app

    create_app(dict(env))  # raises ConfigError naming every problem
    return "every variable is valid for production"


async def _discovery(issuer: str) -> dict:
    if not issuer:
        return {}
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
    answer.raise_for_status()
    return answer.json()


def token_lifetime(token: str) -> str:
    """The workload access token's lifetime from its own `exp` (and `iat`) if it is a JWT; never the token."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "unknown (the token is not a JWT)"
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float):
        return "unknown (the token is a JWT without exp)"
    if isinstance(iat, int | float):
        return f"{exp - iat:.0f} s (exp - iat of the token)"
    return f"{exp - time.time():.0f} s left (exp of the token; no iat)"


def _data_client(credential: CredentialClient, settings: IdentitySettings) -> DataClient:
    return DataClient(sdk_config(credential, settings.region_id, settings.data_endpoint,
                                 timeout_seconds=settings.request_timeout_seconds))


def _access_key(env: Mapping[str, str]) -> CredentialClient:
    return CredentialClient(CredentialConfig(type="access_key", access_key_id=env[ACCESS_KEY[0]],
                                             access_key_secret=env[ACCESS_KEY[1]]))


async def _refused(client: DataClient, settings: IdentitySettings, env: Mapping[str, str],
                   workload_token: str, custom_state: str, what: str) -> str:
    """Empty when GetResourceOAuth2Token accepts the request (a token or a link), else how a 4xx refused
    it; any other failure (5xx, 429, no answer) stops the measurement with `what` in the message."""
    request = GetResourceOAuth2TokenRequest(
        resource_credential_provider_name=env.get("DINGTALK_CREDENTIAL_PROVIDER_NAME", ""),
        scopes=(env.get("DINGTALK_SCOPES") or "openid corpid").split(), oauth2_flow="USER_FEDERATION",
        workload_access_token=workload_token, resource_oauth2_return_url=settings.callback_url,
        custom_state=custom_state)
    try:
        await sdk_call(client.get_resource_oauth2_token, request)
    except Exception as error:  # noqa: BLE001 - only a 4xx refusal is a measurement; the rest is reported
        status, code = getattr(error, "status_code", None) or 0, str(getattr(error, "code", "") or "")
        if not 400 <= status < 500 or status == 429:
            raise RuntimeError(f"the probe {what} failed: {type(error).__name__} HTTP {status} {code}") \
                from None
        return f"HTTP {status} {code}"
    return ""


async def custom_state_limit(identity: AgentIdentity, settings: IdentitySettings,
                             env: Mapping[str, str]) -> str:
    """The longest CustomState GetResourceOAuth2Token accepts: doubling from 1,024 characters until the
    service refuses, then a binary search between the last accepted and the first refused length. Each
    accepted probe opens an authorization session nobody completes; it expires on its own."""
    workload_token = await identity.workload_access_token()
    credential = ((await identity.sts_credential()).credential_client() if settings.use_sts
                  else _access_key(env))
    client = _data_client(credential, settings)
    refusal: list[str] = []

    async def accepted(length: int) -> bool:
        state = secrets.token_urlsafe(length)[:length]
        refused = await _refused(client, settings, env, workload_token, state, f"at {length} characters")
        if refused:
            refusal[:] = [refused]
        return not refused

    if not await accepted(1024):
        return f"under 1,024 characters (refused with {refusal[0]})"
    low, high = 1024, 2048
    while high <= CUSTOM_STATE_PROBE_MAX and await accepted(high):
        low, high = high, high * 2
    if high > CUSTOM_STATE_PROBE_MAX:
        return f"at least {low:,} characters (no refusal up to there)"
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if await accepted(middle) else (low, middle)
    return f"{low:,} characters ({high:,} refused with {refusal[0]})"


async def token_lifetime_probe(settings: IdentitySettings, env: Mapping[str, str], *, limit_seconds: float,
                               interval_seconds: float = 30.0,
                               clock: Callable[[], float] = time.monotonic) -> str:
    """How long a workload access token is accepted, for a token that is not a JWT: a fresh one from
    GetWorkloadAccessTokenForJWT, then GetResourceOAuth2Token with it every `interval_seconds` until the
    service refuses it or `limit_seconds` pass. Both calls are signed with the AccessKey (not with STS
    credentials, whose own expiry would be measured instead)."""
    client = _data_client(_access_key(env), settings)
    started = clock()
    answer = await sdk_call(client.get_workload_access_token_for_jwt, GetWorkloadAccessTokenForJWTRequest(
        workload_identity_name=settings.workload_identity_name, user_token=env["SMOKE_USER_JWT"]))
    workload_token = answer.body.workload_access_token
    last_accepted = 0.0
    while True:
        elapsed = clock() - started
        refused = await _refused(client, settings, env, workload_token, "smoke", f"after {elapsed:.0f} s")
        if refused:
            return f"between {last_accepted:.0f} and {elapsed:.0f} s (refused with {refused})"
        last_accepted = elapsed
        if elapsed >= limit_seconds:
            return f"at least {last_accepted:.0f} s (still accepted when the probe stopped)"
        await asyncio.sleep(interval_seconds)


async def _caller_identity(env: Mapping[str, str], credential: StsCredential) -> str:
    """STS GetCallerIdentity with the workload identity's credentials, configured as the tools do it."""
    settings = ToolSettings.from_env(env)
    client = StsClient(sdk_config(credential.credential_client(), settings.region_id, settings.sts_endpoint,
                                  timeout_seconds=settings.http_timeout_seconds))
    answer = await sdk_call(client.get_caller_identity)
    return f"the workload identity's role is {answer.body.arn}"


async def _callback(settings: IdentitySettings) -> str:
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


async def deployed_agent(agent_url: str, user_jwt: str, dingtalk_doc: str) -> str:
    """The deployed agent as a client calls it (README, "Call it"): refused without a JWT, a plain answer with
    it, and the DingTalk prompt streamed until the authorization link (or the tool's result, once the user
    authorized)."""
    if not agent_url:
        raise Skip("no --agent-url: the deployed agent was not called")
    base = agent_url.rstrip("/")
    endpoint = f"{base}/openai/v1/chat/completions?sessionId=smoke-{secrets.token_hex(4)}"
    auth = {"Authorization": f"Bearer {user_jwt}"}
    plain_chat = {"messages": [{"role": "user", "content": PLAIN_PROMPT}]}
    async with httpx.AsyncClient(timeout=120) as http:
        doing = "the request without a JWT"
        try:
            anonymous = await http.post(endpoint, json=plain_chat)
            if anonymous.status_code != 401:
                raise RuntimeError(f"a request without a JWT got HTTP {anonymous.status_code}, not 401: is "
                                   "the inbound credential (or INBOUND_JWKS_URL) set?")
            doing = "the plain chat"
            plain = await http.post(endpoint, headers=auth, json=plain_chat)
            body = _json(plain)
            if plain.status_code != 200:
                raise RuntimeError(f"the plain chat got HTTP {plain.status_code}: "
                                   f"{(body.get('error') or {}).get('message')}")
            answer = body["choices"][0]["message"]["content"] or ""
            doing = "the DingTalk prompt"
            prompt = DINGTALK_PROMPT.format(doc=dingtalk_doc)
            dingtalk = await _dingtalk_until_link(http, endpoint, auth, prompt)
        except httpx.HTTPError as error:
            raise RuntimeError(f"{doing} failed: {type(error).__name__}: {error}") from None
    return f"401 without a JWT; {body.get('model')} answered {len(answer)} characters; DingTalk: {dingtalk}"


async def _dingtalk_until_link(http: httpx.AsyncClient, endpoint: str, auth: dict[str, str],
                               prompt: str) -> str:
    events: list[dict[str, Any]] = []
    body = {"stream": True, "messages": [{"role": "user", "content": prompt}]}
    async with http.stream("POST", endpoint, headers=auth, json=body) as stream:
        if stream.status_code != 200:
            await stream.aread()
            raise RuntimeError(f"the DingTalk prompt got HTTP {stream.status_code}: "
                               f"{(_json(stream).get('error') or {}).get('message')}")
        async for chunk in chat_chunks(stream):
            if "error" in chunk:
                raise RuntimeError(f"the stream ended with an error: {chunk['error'].get('message')}")
            event = chunk.get("agent_event")
            if not event:
                continue
            events.append(event)
            if event["type"] == "authorization_required":  # as far as a smoke test goes: the user consents
                return f"the authorization link came: {event['url']}"
    finished = [e for e in events if e["type"] == "tool_finished"]
    if not finished:
        raise RuntimeError("the stream ended without the link or a tool result: did the model call the tool?")
    outcome = finished[-1]
    return "already authorized; the tool " + ("wrote the document" if outcome.get("ok")
                                              else f"failed with {outcome.get('code')}")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    from settings import load_env

    parser = argparse.ArgumentParser(prog="./scripts/smoke-cloud", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent-url", default="", help="the deployed agent's public endpoint ($BASE)")
    parser.add_argument("--dingtalk-doc", default="doc123",
                        help="the document of the DingTalk prompt (written once the user authorized)")
    parser.add_argument("--probe-token-lifetime", type=float, default=0.0, metavar="SECONDS",
                        help="reuse one workload access token every 30 s until refused, for at most SECONDS "
                             "(for a token that is not a JWT; off by default)")
    parser.add_argument("--no-custom-state-probe", action="store_true",
                        help="skip the CustomState limit search (about 15 GetResourceOAuth2Token calls)")
    args = parser.parse_args(argv)
    values = dict(load_env() if env is None else env)
    if not values.get("SMOKE_USER_JWT"):
        print("SKIPPED: set SMOKE_USER_JWT to a fresh ID token of a test user (./scripts/get-jwt); nothing "
              "was checked (see sandbox/smoke_cloud.py).")
        return SKIPPED
    results = Results()
    try:
        asyncio.run(run(values, results, agent_url=args.agent_url, dingtalk_doc=args.dingtalk_doc,
                        probe_custom_state=not args.no_custom_state_probe,
                        probe_token_seconds=args.probe_token_lifetime))
    except Exception:  # noqa: BLE001 - say where the script itself broke
        traceback.print_exc()
        return BROKEN
    if results.measured:
        print("\nMeasured:\n" + "\n".join(f"  {name}: {value}" for name, value in results.measured.items()))
    counts = results.counts
    print(f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return results.exit_code


if __name__ == "__main__":
    os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    sys.exit(main())
