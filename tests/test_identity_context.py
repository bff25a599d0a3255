"""The request's identity travels in one request context, and identity/ reads the caller from there only: the
Agent Identity SDK's own context gets no copy of the JWT."""

from __future__ import annotations

import asyncio

from agent_identity_python_sdk.context import AgentIdentityContext

from identity.context import (Caller, RequestContext, bind_request_context, current_request_context,
                              reset_request_context)
from identity.errors import AuthorizationPending
from tests.support.identity import answer_consent, identity_for, signed_in, unique

SCOPES = ("openid", "corpid")


def caller(sub: str, token: str) -> Caller:
    return Caller(sub=sub, claims={"sub": sub}, token=token)


async def test_binding_makes_the_caller_current_keeps_the_session_whole_and_copies_nothing_to_the_sdk() -> None:
    long_session = "chat-" + "7" * 500
    bound = bind_request_context(RequestContext(caller=caller("ann", "jwt-of-ann"), request_id="r1",
                                                session_id=long_session))
    try:
        current = current_request_context()
        assert (current.caller.token, current.caller.sub, current.session_id) == ("jwt-of-ann", "ann", long_session)
        assert (AgentIdentityContext.get_user_token(), AgentIdentityContext.get_user_id(),
                AgentIdentityContext.get_custom_state()) == (None, None, None)
    finally:
        reset_request_context(bound)


async def test_concurrent_requests_never_see_each_other_s_identity() -> None:
    async def request(sub: str) -> tuple[str, str]:
        bound = bind_request_context(RequestContext(caller=caller(sub, f"jwt-of-{sub}"), request_id=sub,
                                                    session_id=f"chat-{sub}"))
        try:
            await asyncio.sleep(0.01)  # the other requests bind meanwhile
            current = current_request_context()
            return current.caller.token, current.session_id or ""
        finally:
            reset_request_context(bound)

    users = [f"user{i}" for i in range(20)]
    seen = await asyncio.gather(*(asyncio.create_task(request(sub)) for sub in users))
    assert seen == [(f"jwt-of-{sub}", f"chat-{sub}") for sub in users]


async def test_a_flow_s_sealed_state_names_its_user_and_flow_not_the_chat_session(fresh_cloud) -> None:
    """The state carries only what the callback needs; the session id, however long, stays in the agent."""
    identity = identity_for(fresh_cloud)
    try:
        async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("session")), wait=False):
            try:
                await identity.oauth2_token(provider=fresh_cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"],
                                            scopes=SCOPES, purpose="Write to DingTalk document")
            except AuthorizationPending as pending:
                link = pending.url
        redirect = await answer_consent(link)
        flow = identity.open_state(redirect["state"])
        assert flow.sub.startswith("session") and flow.flow_id and not hasattr(flow, "session_id")
    finally:
        await identity.aclose()
