"""The authorization callback over real HTTP (uvicorn on this test's loop), against the emulators."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi import FastAPI

from identity.callback import SESSION_COOKIE, callback_router, standalone_callback_app
from identity.context import current_request_context
from identity.errors import AuthorizationDeclined
from identity.state import StateSigner
from tests.test_identity_support import answer_consent, calls, identity_for, serving, signed_in, unique

SCOPES = ["openid", "corpid"]
PURPOSE = "Write to DingTalk document"


def app_with_callback(identity) -> FastAPI:
    app = FastAPI()
    app.include_router(callback_router(identity), prefix="/callback")
    return app


async def start_flow(identity, cloud, jwt: str):
    """Begin an authorization in a task; returns (task, the link event) once the link was emitted."""
    async with signed_in(identity, jwt) as events:
        task = asyncio.create_task(identity.oauth2_token(
            provider=cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"], scopes=SCOPES, purpose=PURPOSE))
    while not events:
        await asyncio.sleep(0.01)
    return task, events[0]


async def completions(cloud) -> int:
    return (await calls(cloud)).get("CompleteResourceTokenAuth", 0)


async def test_bearer_user_completes_and_the_waiting_tool_gets_its_token(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud, poll_initial_seconds=30)  # only the callback's wake-up can end the wait
    jwt = fresh_cloud.issue_user_jwt(unique("cb"))
    task, link = await start_flow(identity, fresh_cloud, jwt)
    redirect = await answer_consent(link.url)
    async with serving(app_with_callback(identity)) as base, httpx.AsyncClient() as http:
        page = await http.get(f"{base}/callback", params=redirect, headers={"Authorization": f"Bearer {jwt}"})
    token = await asyncio.wait_for(task, 10)
    await identity.aclose()
    assert page.status_code == 200
    assert "Authorization complete" in page.text and "you can close this tab" in page.text.lower()
    assert PURPOSE in page.text
    assert fresh_cloud.dingtalk_tokens.get(token).valid
    assert await completions(fresh_cloud) == 1


async def test_session_cookie_identifies_the_browser_user(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    jwt = fresh_cloud.issue_user_jwt(unique("cookie"))
    task, link = await start_flow(identity, fresh_cloud, jwt)
    redirect = await answer_consent(link.url)
    async with serving(app_with_callback(identity)) as base, httpx.AsyncClient() as http:
        session = await http.post(f"{base}/callback/session", headers={"Authorization": f"Bearer {jwt}"})
        set_cookie = session.headers["set-cookie"].lower()
        page = await http.get(f"{base}/callback", params=redirect)  # the client sends the cookie back
    await asyncio.wait_for(task, 10)
    await identity.aclose()
    assert session.status_code == 200 and SESSION_COOKIE in set_cookie
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/callback" in set_cookie
    assert page.status_code == 200 and "Authorization complete" in page.text


async def test_session_route_rejects_an_invalid_token_in_the_openai_error_shape(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with serving(app_with_callback(identity)) as base, httpx.AsyncClient() as http:
        response = await http.post(f"{base}/callback/session", headers={"Authorization": "Bearer a.b.c"})
    await identity.aclose()
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "code"}
    assert "set-cookie" not in response.headers


async def test_forged_expired_and_foreign_states_complete_nothing(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    jwt = fresh_cloud.issue_user_jwt(unique("victim"))
    task, link = await start_flow(identity, fresh_cloud, jwt)
    redirect = await answer_consent(link.url)
    secret = fresh_cloud.env["IDENTITY_STATE_SECRET"]
    victim = current_sub(jwt)
    expired, _ = StateSigner(secret, clock=lambda: time.time() - 3600).issue(
        sub=victim, session_id=None, provider="dingtalk-oauth", ttl_seconds=60)
    other_key, _ = StateSigner("another-secret-of-32-characters!").issue(
        sub=victim, session_id=None, provider="dingtalk-oauth", ttl_seconds=600)
    payload_swapped = redirect["state"].rsplit(".", 1)[0] + "." + other_key.rsplit(".", 1)[1]
    attacker = fresh_cloud.issue_user_jwt(unique("attacker"))
    bearer = {"Authorization": f"Bearer {jwt}"}
    async with serving(app_with_callback(identity)) as base, httpx.AsyncClient() as http:
        async def visit(params, headers=bearer):
            return await http.get(f"{base}/callback", params=params, headers=headers)

        results = {
            "forged signature": await visit({**redirect, "state": payload_swapped}),
            "other secret": await visit({**redirect, "state": other_key}),
            "expired": await visit({**redirect, "state": expired}),
            "no state": await visit({"session_uri": redirect["session_uri"]}),
            "another user's JWT": await visit(redirect, {"Authorization": f"Bearer {attacker}"}),
            "nobody signed in": await visit(redirect, {}),
            "invalid JWT": await visit(redirect, {"Authorization": "Bearer x.y.z"}),
        }
    task.cancel()
    await identity.aclose()
    statuses = {name: r.status_code for name, r in results.items()}
    assert statuses == {"forged signature": 400, "other secret": 400, "expired": 400, "no state": 400,
                        "another user's JWT": 403, "nobody signed in": 401, "invalid JWT": 401}
    assert "expired" in results["expired"].text and "different user" in results["another user's JWT"].text
    assert await completions(fresh_cloud) == 0


async def test_replayed_callback_is_rejected(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    jwt = fresh_cloud.issue_user_jwt(unique("replay"))
    task, link = await start_flow(identity, fresh_cloud, jwt)
    redirect = await answer_consent(link.url)
    async with serving(app_with_callback(identity)) as base, httpx.AsyncClient() as http:
        headers = {"Authorization": f"Bearer {jwt}"}
        first = await http.get(f"{base}/callback", params=redirect, headers=headers)
        again = await http.get(f"{base}/callback", params=redirect, headers=headers)
        # The same session_uri under a fresh, validly signed state of the same user is a replay too.
        fresh_state, _ = StateSigner(fresh_cloud.env["IDENTITY_STATE_SECRET"]).issue(
            sub=current_sub(jwt), session_id=None, provider="dingtalk-oauth", ttl_seconds=600)
        resigned = await http.get(f"{base}/callback", params={**redirect, "state": fresh_state}, headers=headers)
    await asyncio.wait_for(task, 10)
    await identity.aclose()
    assert (first.status_code, again.status_code, resigned.status_code) == (200, 409, 409)
    assert await completions(fresh_cloud) == 1


async def test_access_denied_ends_the_waiting_tool_as_declined(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud, poll_initial_seconds=30)  # the emulator's FAILED status is not polled
    jwt = fresh_cloud.issue_user_jwt(unique("declines"))
    task, link = await start_flow(identity, fresh_cloud, jwt)
    redirect = await answer_consent(link.url, "deny")
    assert redirect["error"] == "access_denied"
    async with serving(app_with_callback(identity)) as base, httpx.AsyncClient() as http:
        page = await http.get(f"{base}/callback", params=redirect)
    with pytest.raises(AuthorizationDeclined):
        await asyncio.wait_for(task, 5)
    await identity.aclose()
    assert page.status_code == 200 and "declined" in page.text
    assert await completions(fresh_cloud) == 0


async def test_standalone_callback_uses_the_jwt_given_at_start(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    jwt = fresh_cloud.issue_user_jwt(unique("standalone"))
    task, link = await start_flow(identity, fresh_cloud, jwt)
    redirect = await answer_consent(link.url)
    # A separate process in real use: its own AgentIdentity, so it knows nothing of the pending flow.
    helper_identity = identity_for(fresh_cloud)
    async with serving(standalone_callback_app(helper_identity, jwt)) as base, httpx.AsyncClient() as http:
        page = await http.get(f"{base}/callback", params=redirect)
    token = await asyncio.wait_for(task, 10)
    await helper_identity.aclose()
    await identity.aclose()
    assert page.status_code == 200 and "Authorization complete" in page.text
    assert fresh_cloud.dingtalk_tokens.get(token).valid


def current_sub(jwt: str) -> str:
    import jwt as pyjwt
    return pyjwt.decode(jwt, options={"verify_signature": False})["sub"]


async def test_context_is_not_left_bound() -> None:
    from identity.errors import NoRequestContext
    with pytest.raises(NoRequestContext):
        current_request_context()
