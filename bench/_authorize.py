"""Give simulated users a stored DingTalk token: run the real consent flow once per user, before measuring.

The flow is the product's own: our identity service asks Agent Identity for the user's token and gets an
authorization link; the "user" approves on the emulator's consent page; the browser would land on our
callback with `session_uri` and the sealed `state`, and `complete_authorization` confirms it with the flow's JWT. Afterwards Agent
Identity's vault holds a DingTalk token for the user, which both the naive SDK and our code then read.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

import httpx


async def authorize_users(env: Mapping[str, str], user_tokens: list[str], *, concurrency: int = 20) -> None:
    """Authorize DingTalk for every user whose JWT is in `user_tokens` (idempotent: authorized users pass)."""
    from identity.context import RequestContext, bind_request_context, reset_request_context
    from identity.errors import AuthorizationPending
    from identity.service import AgentIdentity
    from settings.identity import IdentitySettings
    from tools.dingtalk import DINGTALK, SCOPES
    from settings.tools import ToolSettings

    identity = AgentIdentity(IdentitySettings.from_env(env))
    dingtalk = ToolSettings.from_env(env, [DINGTALK]).oauth2[DINGTALK.env_prefix]
    gate = asyncio.Semaphore(concurrency)

    async def authorize(jwt: str, browser: httpx.AsyncClient) -> None:
        async with gate:
            caller = await identity.authenticate(f"Bearer {jwt}")
            bound = bind_request_context(RequestContext(caller=caller, session_id=None,
                                                        request_id=uuid.uuid4().hex,
                                                        wait_for_authorization=False))
            try:
                await identity.oauth2_token(provider=dingtalk.credential_provider,
                                            scopes=dingtalk.scopes or SCOPES, purpose="benchmark setup")
                return  # already authorized
            except AuthorizationPending as pending:
                session_uri, state = await approve_on_consent_page(browser, pending.url)
            finally:
                reset_request_context(bound)
            await identity.complete_authorization(session_uri=session_uri, flow=identity.open_state(state))

    try:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as browser:
            await asyncio.gather(*(authorize(jwt, browser) for jwt in user_tokens))
    finally:
        await identity.aclose()


async def approve_on_consent_page(browser: httpx.AsyncClient, authorization_url: str) -> tuple[str, str]:
    """Press "Approve" on the consent page; return the `session_uri` and `state` the browser is sent back with."""
    page = await browser.get(authorization_url)
    page.raise_for_status()
    answer = await browser.post(authorization_url, data={"decision": "approve"}, follow_redirects=False)
    location = answer.headers.get("location", "")
    query = parse_qs(urlsplit(location).query)
    session_uri, state = query.get("session_uri", [""])[0], query.get("state", [""])[0]
    if not session_uri:
        raise RuntimeError(f"the consent page did not redirect back with a session_uri (HTTP {answer.status_code})")
    return session_uri, state
