"""The request's identity travels in the Agent Identity SDK's own context, and identity/ reads it from there."""

from __future__ import annotations

import asyncio

from agent_identity_python_sdk.context import AgentIdentityContext

from identity.context import (Caller, RequestContext, bind_request_context, current_session_id, current_user_token,
                              reset_request_context)
from identity.errors import AuthorizationPending
from tests.test_identity_support import answer_consent, identity_for, signed_in, unique

SCOPES = ("openid", "corpid")


def caller(sub: str, token: str) -> Caller:
    return Caller(sub=sub, claims={"sub": sub}, token=token)


async def test_binding_hands_jwt_subject_and_session_to_the_sdk_context_and_unbinding_empties_it() -> None:
    bound = bind_request_context(RequestContext(caller=caller("ann", "jwt-of-ann"), request_id="r1",
                                                session_id="chat-7"))
    try:
        assert (AgentIdentityContext.get_user_token(), AgentIdentityContext.get_user_id(),
                AgentIdentityContext.get_custom_state()) == ("jwt-of-ann", "ann", "chat-7")
        assert (current_user_token(), current_session_id()) == ("jwt-of-ann", "chat-7")
    finally:
        reset_request_context(bound)
    assert AgentIdentityContext.get_user_token() is None and AgentIdentityContext.get_user_id() is None


async def test_concurrent_requests_never_see_each_other_s_identity() -> None:
    async def request(sub: str) -> tuple[str, str]:
        bound = bind_request_context(RequestContext(caller=caller(sub, f"jwt-of-{sub}"), request_id=sub,
                                                    session_id=f"chat-{sub}"))
        try:
            await asyncio.sleep(0.01)  # the other requests bind meanwhile
            return current_user_token(), current_session_id()
        finally:
            reset_request_context(bound)

    users = [f"user{i}" for i in range(20)]
    seen = await asyncio.gather(*(asyncio.create_task(request(sub)) for sub in users))
    assert seen == [(f"jwt-of-{sub}", f"chat-{sub}") for sub in users]


async def test_a_flow_carries_the_session_that_asked_in_its_sealed_state(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    try:
        async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("session")), wait=False):
            try:
                await identity.oauth2_token(provider=fresh_cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"],
                                            scopes=SCOPES, purpose="Write to DingTalk document")
            except AuthorizationPending as pending:
                link = pending.url
        redirect = await answer_consent(link)
        assert identity.open_state(redirect["state"]).session_id == "chat-1"  # signed_in's session
    finally:
        await identity.aclose()

