"""Helpers shared by the identity and callback tests: build AgentIdentity from the emulators' env, bind a
request context, drive the emulator's consent page and read its call counters, all over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn

from identity.context import RequestContext, bind_request_context, reset_request_context
from identity.service import AgentIdentity
from settings.identity import IdentitySettings

FAST_POLLING = {"poll_interval_seconds": 0.05}
SCOPES = ["openid", "corpid"]
PURPOSE = "Write to DingTalk document"


def identity_for(cloud: Any, clock: Any = None, env: dict[str, str] | None = None, **overrides: Any) -> AgentIdentity:
    settings = replace(IdentitySettings.from_env({**cloud.env, **(env or {})}), **{**FAST_POLLING, **overrides})
    return AgentIdentity(settings, clock=clock) if clock else AgentIdentity(settings)


class Events(list):
    async def __call__(self, event: object) -> None:
        self.append(event)


@contextlib.asynccontextmanager
async def signed_in(identity: AgentIdentity, jwt: str, *, wait: bool = True,
                    events: Events | None = None) -> AsyncIterator[Events]:
    """Authenticate `jwt` the way app.py does and bind the request context for the block."""
    caller = await identity.authenticate(f"Bearer {jwt}")
    sink = events if events is not None else Events()
    token = bind_request_context(RequestContext(caller=caller, session_id="chat-1", request_id="req-1", emit=sink,
                                                wait_for_authorization=wait))
    try:
        yield sink
    finally:
        reset_request_context(token)


async def calls(cloud: Any, name: str = "agent_identity") -> dict[str, int]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{cloud.url(name)}/emulator/calls")).json()


async def set_faults(cloud: Any, name: str = "agent_identity", **faults: Any) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{cloud.url(name)}/emulator/faults", json=faults)).raise_for_status()


async def answer_consent(authorization_url: str, decision: str = "approve") -> dict[str, str]:
    """Open the emulator's consent page and click Approve/Deny; the query the provider sends to the return URL."""
    async with httpx.AsyncClient(trust_env=False) as http:
        (await http.get(authorization_url)).raise_for_status()
        response = await http.post(authorization_url, data={"decision": decision})
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


@contextlib.asynccontextmanager
async def serving(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app on a free 127.0.0.1 port (or `sock`) on THIS event loop (so it shares in-process
    signals)."""
    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield "http://127.0.0.1:%d" % sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


def unique(prefix: str) -> str:
    """A user name no other test uses: the emulator's token vault outlives a test."""
    return f"{prefix}-{secrets.token_hex(4)}"


async def start_flow(identity: AgentIdentity, cloud: Any, jwt: str) -> tuple[asyncio.Task[str], Any]:
    """Begin an authorization in a task; returns (task, the link event) once the link was emitted."""
    async with signed_in(identity, jwt) as events:
        task = asyncio.create_task(identity.oauth2_token(
            provider=cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"], scopes=SCOPES, purpose=PURPOSE))
    while not events:
        await asyncio.sleep(0.01)
    return task, events[0]


def sized_user_jwt(cloud: Any, sub: str, length: int, **claims: Any) -> str:
    """A JWT of `length` characters (to within a few) for `sub`, from the emulated IdP's password grant,
    padded with a `pad` claim: the large tokens real IdPs issue (many groups, roles)."""
    def mint(pad: str) -> str:
        answer = httpx.post(f"{cloud.url('idp')}/token", verify=cloud.ssl_context(), trust_env=False, data={
            "grant_type": "password", "username": sub, "claims": json.dumps({**claims, "pad": pad})})
        answer.raise_for_status()
        return answer.json()["id_token"]

    # The claims are base64url-encoded in the JWT: 3 characters of padding add 4 to its length.
    pad = "x" * max(0, (length - len(mint(""))) * 3 // 4)
    token = mint(pad)
    return mint(pad + "x" * max(0, (length - len(token)) * 3 // 4)) if len(token) < length - 2 else token
