"""The authorization callback over real HTTP against the emulators: browser sign-in at the IdP (OIDC code flow
with PKCE), the sealed session cookie, completion with the flow's original JWT, and every bad input a
browser or an attacker can bring, each answered with a clear page and nothing completed.

The callback is served on this test's loop (uvicorn), with its own AgentIdentity beside the one that waits,
as a separate callback deployment would have. The browser is `LinkFollowingBrowser`: it follows redirects,
keeps cookies and submits forms, and sends no header a person's browser would not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from http.cookies import SimpleCookie
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from callback.browser_session import BrowserSessions, SignInTransaction
from callback.routes import CallbackRoutes
from identity.errors import AuthorizationDeclined, AuthorizationFailed
from identity.service import AgentIdentity
from identity.state import MAX_CUSTOM_STATE_CHARACTERS, FlowStates
from tests.support.deployment import LinkFollowingBrowser, page_title, switch_href
from tests.support.identity import (PURPOSE, answer_consent, calls, identity_for, serving, set_faults, start_flow, unique)



@dataclass
class Callback:
    """A served callback and the identity of the agent that waits for it (two AgentIdentity instances)."""

    base: str
    routes: CallbackRoutes
    waiting: AgentIdentity

    @property
    def url(self) -> str:
        return f"{self.base}/callback"


@asynccontextmanager
async def callback_for(cloud, public_url: str | None = None, *, same_process: bool = False,
                       **waiting_overrides) -> AsyncIterator[Callback]:
    """A served callback. `same_process`: it shares the waiting identity, as the callback mounted in the agent
    does (so what it sees reaches a waiting tool at once)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    public = public_url or base
    cloud.register_return_url(f"{public}/callback")
    env = {"APP_REDIRECT_URI": public}
    waiting = identity_for(cloud, env=env, **waiting_overrides)
    callback_identity = waiting if same_process else identity_for(cloud, env=env)
    routes = CallbackRoutes(callback_identity)
    app = FastAPI()
    app.include_router(routes.router, prefix="/callback")
    try:
        async with serving(app, sock) as served:
            yield Callback(served, routes, waiting)
    finally:
        await routes.aclose()
        await waiting.aclose()
        if callback_identity is not waiting:
            await callback_identity.aclose()


async def completions(cloud) -> int:
    return (await calls(cloud)).get("CompleteResourceTokenAuth", 0)


async def test_a_browser_signs_in_at_the_idp_and_the_flow_completes_with_the_original_jwt(fresh_cloud) -> None:
    user = unique("signin")
    async with callback_for(fresh_cloud) as callback:
        jwt = fresh_cloud.issue_user_jwt(user)
        task, link = await start_flow(callback.waiting, fresh_cloud, jwt)
        browser = LinkFollowingBrowser()
        consent = await browser.open(link.url)
        idp_page = await browser.submit(consent, "approve")
        hops = [str(r.url) for r in idp_page.history] + [str(idp_page.url)]
        done = await browser.submit(idp_page, "sign-in", username=user)
        await browser.aclose()
        token = await asyncio.wait_for(task, 10)

    # The provider's redirect reached the callback, which sent the browser to the IdP with PKCE and a nonce.
    assert hops[1].startswith(f"{callback.url}?")
    assert hops[2].startswith(fresh_cloud.browser_url("idp") + "/authorize?")
    authorize = {k: v[0] for k, v in parse_qs(urlsplit(hops[2]).query).items()}
    assert authorize["code_challenge_method"] == "S256" and len(authorize["code_challenge"]) == 43
    assert authorize["redirect_uri"] == f"{callback.url}/signed-in" and authorize["nonce"]
    assert authorize["client_id"] == fresh_cloud.env["CALLBACK_OIDC_CLIENT_ID"] and "openid" in authorize["scope"]
    assert str(done.url).startswith(f"{callback.url}/signed-in?")
    assert done.status_code == 200 and page_title(done) == "Authorization complete" and PURPOSE in done.text
    assert fresh_cloud.dingtalk_tokens.get(token).valid
    # The Agent Identity emulator accepts only the JWT the workload token came from: the sealed state's.
    assert await completions(fresh_cloud) == 1


async def test_the_session_cookie_is_sealed_short_lived_and_scoped_to_the_public_callback(fresh_cloud) -> None:
    user = unique("cookie")
    async with callback_for(fresh_cloud) as callback:
        browser = LinkFollowingBrowser()
        jwts = []
        for doc in range(2):  # the second flow needs no new sign-in: the session cookie says who this is
            waiting = identity_for(fresh_cloud, env={"APP_REDIRECT_URI": callback.base})  # a new agent process
            jwts.append(fresh_cloud.issue_user_jwt(user))
            task, link = await start_flow(waiting, fresh_cloud, jwts[-1])
            consent = await browser.open(link.url)
            landing = await browser.submit(consent, "approve")
            if doc == 0:
                signin_cookie = landing.history[-1].headers["set-cookie"]  # the callback's 302 to the IdP
                landing = await browser.submit(landing, "sign-in", username=user)
                session_cookie = ", ".join(landing.headers.get_list("set-cookie"))
            assert page_title(landing) == "Authorization complete"
            await asyncio.wait_for(task, 10)
            await waiting.aclose()
            await set_vault_empty(fresh_cloud, user)
        await browser.aclose()
    cookies = callback.routes.sessions.cookies
    assert cookies.sign_in_name in signin_cookie and cookies.session_name in session_cookie
    for header in (signin_cookie.lower(), session_cookie.lower()):
        assert "httponly" in header and "samesite=lax" in header and "path=/callback" in header
        assert "secure" not in header  # a plain-http public URL (local runs)
    value = session_cookie.split(f"{cookies.session_name}=", 1)[1].split(";", 1)[0]
    assert value.startswith("v1.") and "max-age=900" in session_cookie.lower()
    assert not [jwt for jwt in jwts for header in (signin_cookie, session_cookie) if jwt in header]
    assert user not in signin_cookie + session_cookie  # sealed, not merely signed


async def set_vault_empty(cloud, user: str) -> None:
    """Revoke the user's DingTalk token, so the next ask needs a new authorization."""
    async with httpx.AsyncClient(trust_env=False, verify=cloud.ssl_context()) as http:
        (await http.post(f"{cloud.url('dingtalk')}/emulator/revoke", json={"subject": user})).raise_for_status()


@pytest.mark.parametrize("public", ["https://agent.example.com/agent-runtimes/a/endpoints/e/invocations",
                                    "http://127.0.0.1:8090"])
def test_no_cookie_passes_4000_bytes_for_the_largest_state_that_fits(public: str) -> None:
    """A sealed state of up to MAX_CUSTOM_STATE_CHARACTERS goes to the IdP and back in the sign-in cookie, and
    to the "Wrong user" page in the refusal cookie: split so that no cookie's name and value pass 4,000 bytes
    (Chromium drops one over 4,096), and read back whole."""
    secret = "s" * 32
    states = FlowStates(secret)
    jwt_length = 2000
    while len(states.issue(sub="u", user_jwt="j" * (jwt_length + 1), provider="dingtalk", purpose=PURPOSE,
                           ttl_seconds=360)[0]) <= MAX_CUSTOM_STATE_CHARACTERS:
        jwt_length += 1
    state, _ = states.issue(sub="u", user_jwt="j" * jwt_length, provider="dingtalk", purpose=PURPOSE,
                            ttl_seconds=360)
    assert MAX_CUSTOM_STATE_CHARACTERS - 3 <= len(state) <= MAX_CUSTOM_STATE_CHARACTERS
    resume = {"state": state, "session_uri": "urn:ietf:params:oauth:request_uri:" + "r" * 43}
    sessions = BrowserSessions(secret, f"{public}/callback")
    transaction = SignInTransaction(verifier="v" * 64, nonce="n" * 32, csrf="c" * 32, resume=resume)
    response = Response()
    sessions.start_sign_in(response, transaction)
    sessions.remember_refusal(response, resume)
    sessions.sign_in(response, "u" * 64)
    jar = SimpleCookie()
    for header in response.headers.getlist("set-cookie"):
        name_and_value = header.split(";", 1)[0]
        assert len(name_and_value.encode()) <= 4000, (len(name_and_value), header[:80])
        jar.load(header)
    assert len(jar) == 5  # two for the sign-in, two for the refusal, the session
    request = Request({"type": "http", "headers": [
        (b"cookie", "; ".join(f"{k}={m.coded_value}" for k, m in jar.items()).encode())]})
    assert sessions.pending_sign_in(request) == transaction
    assert sessions.refused_resume(request) == resume


def test_over_https_cookies_are_secure_host_prefixed_and_named_for_the_public_url() -> None:
    public = "https://1234.agentrun-data.cn-hangzhou.aliyuncs.com/agent-runtimes/a/endpoints/e/invocations/callback"
    other = public.replace("/a/", "/b/")
    policy = BrowserSessions("k" * 32, public).cookies
    assert policy.secure and policy.path == "/"
    assert policy.session_name.startswith("__Host-") and policy.sign_in_name.startswith("__Host-")
    assert policy.session_name != BrowserSessions("k" * 32, other).cookies.session_name
    local = BrowserSessions("k" * 32, "http://localhost:8090/prefix/callback").cookies
    assert not local.secure and local.path == "/prefix/callback" and not local.session_name.startswith("__")


async def test_forged_expired_and_foreign_states_complete_nothing(fresh_cloud) -> None:
    async with callback_for(fresh_cloud) as callback:
        jwt = fresh_cloud.issue_user_jwt(unique("victim"))
        task, link = await start_flow(callback.waiting, fresh_cloud, jwt)
        redirect = await answer_consent(link.url)
        secret = fresh_cloud.env["IDENTITY_STATE_SECRET"]
        victim = callback.routes.identity.open_state(redirect["state"])
        expired, _ = FlowStates(secret, clock=lambda: 0).issue(sub=victim.sub, user_jwt=jwt, provider="p",
                                                               purpose="x", ttl_seconds=60)
        other_key, _ = FlowStates("another-secret-of-32-characters!").issue(
            sub=victim.sub, user_jwt=jwt, provider="p", purpose="x", ttl_seconds=600)
        tampered = redirect["state"][:-4] + ("AAAA" if not redirect["state"].endswith("AAAA") else "BBBB")
        attacker = fresh_cloud.issue_user_jwt(unique("attacker"))
        bearer = {"Authorization": f"Bearer {jwt}"}
        async with httpx.AsyncClient(trust_env=False) as http:
            async def visit(params, headers=bearer):
                return await http.get(callback.url, params=params, headers=headers)

            results = {
                "tampered": await visit({**redirect, "state": tampered}),
                "other secret": await visit({**redirect, "state": other_key}),
                "expired": await visit({**redirect, "state": expired}),
                "no state": await visit({"session_uri": redirect["session_uri"]}),
                "huge": await visit({**redirect, "session_uri": "x" * 9000}),
                "invalid JWT": await visit(redirect, {"Authorization": "Bearer x.y.z"}),
                "no session_uri": await visit({"state": redirect["state"]}),
                "another user's JWT": await visit(redirect, {"Authorization": f"Bearer {attacker}"}),
                "the owner after that": await visit(redirect),  # refused here from now on, even to its owner
            }
        task.cancel()
    statuses = {name: r.status_code for name, r in results.items()}
    assert statuses == {"tampered": 400, "other secret": 400, "expired": 400, "no state": 400, "huge": 400,
                        "another user's JWT": 303, "invalid JWT": 302, "no session_uri": 400,
                        "the owner after that": 409}
    assert "expired" in results["expired"].text
    assert results["another user's JWT"].headers["location"] == f"{callback.url}/wrong-user"
    assert page_title(results["the owner after that"]) == "Link opened by a different user"
    assert results["invalid JWT"].headers["location"].startswith(
        fresh_cloud.browser_url("idp"))  # sign in instead
    assert all("text/html" in r.headers["content-type"] for r in results.values() if r.status_code < 300)
    assert await completions(fresh_cloud) == 0


async def test_a_replayed_callback_completes_nothing_more(fresh_cloud) -> None:
    async with callback_for(fresh_cloud) as callback:
        jwt = fresh_cloud.issue_user_jwt(unique("replay"))
        task, link = await start_flow(callback.waiting, fresh_cloud, jwt)
        redirect = await answer_consent(link.url)
        headers = {"Authorization": f"Bearer {jwt}"}
        async with httpx.AsyncClient(trust_env=False) as http:
            first = await http.get(callback.url, params=redirect, headers=headers)
            again = await http.get(callback.url, params=redirect, headers=headers)
        await asyncio.wait_for(task, 10)
        # Another callback instance knows nothing of the first: Agent Identity refuses the second completion.
        async with callback_for(fresh_cloud) as elsewhere, httpx.AsyncClient(trust_env=False) as http:
            other = await http.get(f"{elsewhere.base}/callback", params=redirect, headers=headers)
    assert (first.status_code, again.status_code) == (200, 409)
    assert other.status_code == 400 and page_title(other) == "Authorization failed"
    assert await completions(fresh_cloud) == 2  # the second one was refused by the service


async def test_error_from_the_provider_counts_only_for_the_signed_in_owner(fresh_cloud) -> None:
    owner, intruder = unique("owner"), unique("intruder")
    # Polled rarely: only what the callback saw (in the same process) can end the wait in time.
    async with callback_for(fresh_cloud, same_process=True, poll_interval_seconds=30) as callback:
        task, link = await start_flow(callback.waiting, fresh_cloud, fresh_cloud.issue_user_jwt(owner))
        redirect = await answer_consent(link.url, "deny")
        assert redirect["error"] == "access_denied"
        async with httpx.AsyncClient(trust_env=False) as http:
            anonymous = await http.get(callback.url, params=redirect)
        intruding = LinkFollowingBrowser()
        first = await intruding.open(f"{callback.url}?{httpx.QueryParams(redirect)}")
        wrong_user = await intruding.submit(first, "sign-in", username=intruder)
        still_waiting = not task.done()
        # The refused URL no longer answers by itself here, even to its owner in another browser ...
        elsewhere = LinkFollowingBrowser()
        refused = await elsewhere.open(f"{callback.url}?{httpx.QueryParams(redirect)}")
        await elsewhere.aclose()
        # ... only the switch in the browser it was refused in, which signs its owner in.
        signin = await intruding.open(urljoin(str(wrong_user.url), switch_href(wrong_user)))
        declined = await intruding.submit(signin, "sign-in", username=owner)
        await intruding.aclose()
        with pytest.raises(AuthorizationDeclined):
            await asyncio.wait_for(task, 5)
    assert anonymous.status_code == 302
    assert anonymous.headers["location"].startswith(fresh_cloud.browser_url("idp"))
    assert wrong_user.status_code == 403 and page_title(wrong_user) == "Wrong user" and still_waiting
    assert str(wrong_user.url) == f"{callback.url}/wrong-user"  # the callback query left the address bar
    assert refused.status_code == 409 and page_title(refused) == "Link opened by a different user"
    assert "prompt=login" in str(signin.url)
    assert declined.status_code == 200 and page_title(declined) == "Authorization declined"
    assert await completions(fresh_cloud) == 0


async def test_the_wrong_user_page_names_the_starter_only_by_a_display_name(fresh_cloud) -> None:
    """No `sub` and no e-mail address of the flow's owner on the page; the IdP's display name when it gave one
    (the emulated IdP sets `name` and `preferred_username` to the `sub` unless told otherwise)."""
    pages = {}
    async with callback_for(fresh_cloud) as callback:
        for label in ("named", "unnamed", "e-mail as name"):
            owner = unique("alice")
            email = f"{owner}@example.com"
            names = {"named": {"name": "Alice Example"}, "unnamed": {},
                     "e-mail as name": {"name": email, "preferred_username": email}}[label]
            jwt = fresh_cloud.issue_user_jwt(owner, email=email, **names)
            task, link = await start_flow(callback.waiting, fresh_cloud, jwt)
            browser = LinkFollowingBrowser()
            signin = await browser.submit(await browser.open(link.url), "approve")
            pages[label] = (await browser.submit(signin, "sign-in", username=unique("bob")), owner, email)
            task.cancel()
            await browser.aclose()
        stranger = LinkFollowingBrowser()
        nothing = [await stranger.open(f"{callback.url}/{path}") for path in ("wrong-user", "switch-user")]
        await stranger.aclose()
    for page, owner, email in pages.values():
        assert page.status_code == 403 and page_title(page) == "Wrong user"
        assert str(page.url) == f"{callback.url}/wrong-user" and switch_href(page) == "switch-user"
        assert owner not in page.text and email not in page.text and "@" not in page.text
    assert "started by Alice Example," in pages["named"][0].text
    assert "started by a different user," in pages["unnamed"][0].text
    assert "started by a different user," in pages["e-mail as name"][0].text
    assert [(p.status_code, page_title(p)) for p in nothing] == [(400, "Sign-in expired")] * 2
    assert await completions(fresh_cloud) == 0


async def test_an_unknown_provider_error_ends_the_waiting_tool_at_once(fresh_cloud) -> None:
    user = unique("provider-error")
    jwt = fresh_cloud.issue_user_jwt(user)
    async with callback_for(fresh_cloud, same_process=True, poll_interval_seconds=30) as callback:
        task, link = await start_flow(callback.waiting, fresh_cloud, jwt)
        redirect = await answer_consent(link.url, "deny")
        async with httpx.AsyncClient(trust_env=False) as http:
            page = await http.get(callback.url, params={"state": redirect["state"], "error": "server_error"},
                                  headers={"Authorization": f"Bearer {jwt}"})
        with pytest.raises(AuthorizationFailed, match="server_error"):
            await asyncio.wait_for(task, 5)
    assert page.status_code == 502 and "server_error" in page.text


@pytest.fixture
async def halfway(fresh_cloud):
    """A flow approved at the provider, the browser sent to the IdP and signed in there, stopped just before
    it returns to `/callback/signed-in`: (callback, browser, the IdP's redirect URL, the flow's task)."""
    user = unique("halfway")
    async with callback_for(fresh_cloud) as callback:
        task, link = await start_flow(callback.waiting, fresh_cloud, fresh_cloud.issue_user_jwt(user))
        browser = LinkFollowingBrowser()
        consent = await browser.open(link.url)
        signin = await browser.submit(consent, "approve")
        browser.http.follow_redirects = False
        back = await browser.submit(signin, "sign-in", username=user)
        browser.http.follow_redirects = True
        assert back.status_code == 302
        yield callback, browser, back.headers["location"], task
        task.cancel()
        await browser.aclose()


async def test_a_sign_in_answer_is_used_once(halfway, fresh_cloud) -> None:
    callback, browser, location, task = halfway
    first = await browser.open(location)
    again = await browser.open(location)  # the sign-in cookie is gone
    restored = BrowserSessions(fresh_cloud.env["IDENTITY_STATE_SECRET"], callback.url)
    assert first.status_code == 200 and again.status_code == 400 and page_title(again) == "Sign-in expired"
    await asyncio.wait_for(task, 10)
    assert restored.cookies.sign_in_name not in browser.http.cookies


async def forged_sign_in(callback: Callback, browser: LinkFollowingBrowser, cloud, **changes: str) -> None:
    """Replace the browser's sign-in cookie by one sealed with the real key but with `changes`."""
    sessions = BrowserSessions(cloud.env["IDENTITY_STATE_SECRET"], callback.url)
    cookie = next(c for c in browser.http.cookies.jar if c.name == sessions.cookies.sign_in_name)
    current = sessions.open_sign_in(sessions.cookies.read_chunked({cookie.name: cookie.value or ""},
                                                                  cookie.name))
    assert current is not None
    forged = dataclasses.replace(current, **changes)
    browser.http.cookies.set(cookie.name, f"1:{sessions.seal_sign_in(forged)}", domain=cookie.domain,
                             path=cookie.path)


@pytest.mark.parametrize("changes, why", [
    ({"verifier": "W" * 64}, "did not accept"),  # wrong PKCE verifier: the IdP refuses the code
    ({"nonce": "another-nonce"}, "another sign-in"),  # the ID token was issued for another sign-in
])
async def test_a_sign_in_that_does_not_match_completes_nothing(halfway, fresh_cloud, changes, why) -> None:
    callback, browser, location, task = halfway
    await forged_sign_in(callback, browser, fresh_cloud, **changes)
    page = await browser.open(location)
    assert page.status_code == 401 and page_title(page) == "Sign-in failed" and why in page.text
    assert not task.done() and await completions(fresh_cloud) == 0


async def test_a_sign_in_answer_from_another_browser_or_forged_state_is_refused(halfway, fresh_cloud) -> None:
    callback, browser, location, task = halfway
    stranger = LinkFollowingBrowser()
    foreign = await stranger.open(location)  # no sign-in cookie: not started in this browser
    await stranger.aclose()
    query = dict(parse_qs(urlsplit(location).query))
    wrong_state = await browser.open(f"{callback.url}/signed-in?code={query['code'][0]}&state=forged")
    idp_error = await browser.open(f"{callback.url}/signed-in?error=access_denied&state={query['state'][0]}")
    assert (foreign.status_code, wrong_state.status_code, idp_error.status_code) == (400, 400, 401)
    assert not task.done() and await completions(fresh_cloud) == 0


async def test_an_idp_that_is_down_gets_a_clear_page_and_completes_nothing(halfway, fresh_cloud) -> None:
    callback, browser, location, task = halfway
    await set_faults(fresh_cloud, "idp", fail_next=1, fail_status=503, match="/token")
    page = await browser.open(location)
    assert page.status_code == 503 and "unavailable" in page.text and not task.done()
    assert await completions(fresh_cloud) == 0


async def test_discovery_that_fails_is_a_clear_page(fresh_cloud) -> None:
    async with callback_for(fresh_cloud) as callback:
        jwt = fresh_cloud.issue_user_jwt(unique("discovery"))
        task, link = await start_flow(callback.waiting, fresh_cloud, jwt)
        redirect = await answer_consent(link.url)
        await set_faults(fresh_cloud, "idp", fail_next=1, fail_status=500, match="openid-configuration")
        async with httpx.AsyncClient(trust_env=False) as http:
            page = await http.get(callback.url, params=redirect)
        task.cancel()
    assert page.status_code == 503 and page_title(page) == "Sign-in unavailable"


async def test_without_a_sign_in_client_the_page_says_what_the_operator_must_set(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud, signin_client_id="")
    routes = CallbackRoutes(identity)
    app = FastAPI()
    app.include_router(routes.router, prefix="/callback")
    waiting = identity_for(fresh_cloud)
    task, link = await start_flow(waiting, fresh_cloud, fresh_cloud.issue_user_jwt(unique("no-oidc")))
    redirect = await answer_consent(link.url)
    async with serving(app) as base, httpx.AsyncClient(trust_env=False) as http:
        page = await http.get(f"{base}/callback", params=redirect)
    task.cancel()
    await routes.aclose()
    await identity.aclose()
    await waiting.aclose()
    assert page.status_code == 401 and "CALLBACK_OIDC_CLIENT_ID" in page.text
