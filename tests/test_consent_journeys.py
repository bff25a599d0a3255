"""The consent round trip across processes and gateways, as production deploys it: the agent and the callback
are separate processes (several agents, where the platform scales out), the callback may sit behind a
gateway's path prefix, and a browser that only follows links finishes it.

Nothing is shared between the processes but the emulated cloud: the flow travels sealed in the state, the
browser's sign-in in its cookies, the token in Agent Identity's vault.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from urllib.parse import urljoin

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators import start_local_cloud
from emulators._server import listening_socket
from sandbox.process import app_process, free_port
from tests.support.deployment import (DINGTALK_PROMPT, LinkFollowingBrowser, deployment, page_title,
                                      stream_chat, switch_href)
from tests.support.e2e import document_content_at
from tests.support.identity import serving, sized_user_jwt

GATEWAY_PREFIX = "/agent-runtimes/identity-agent/endpoints/prod/invocations"  # AgentRun's invocation path
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


def path_prefix_gateway(upstream: str, http: httpx.AsyncClient) -> Starlette:
    """A reverse proxy that serves `upstream` under GATEWAY_PREFIX and strips it, as AgentRun's gateway does;
    everything else is 404. Headers (cookies, redirects) pass unchanged."""

    async def forward(request: Request) -> Response:
        path = request.url.path
        if not path.startswith(GATEWAY_PREFIX + "/"):
            return Response("not found", status_code=404)
        answer = await http.request(request.method, upstream + path[len(GATEWAY_PREFIX):],
                                    params=request.query_params, content=await request.body(),
                                    headers=[(k, v) for k, v in request.headers.items() if k not in HOP_BY_HOP])
        response = Response(answer.content, status_code=answer.status_code)
        response.raw_headers += [(k.encode(), v.encode()) for k, v in answer.headers.multi_items()
                                 if k.lower() not in HOP_BY_HOP]
        return response

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


@asynccontextmanager
async def gateway_in_front_of_a_callback() -> AsyncIterator[tuple]:
    """(deployment, public base URL): the callback process reached only through the path-prefix gateway."""
    sock = listening_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}{GATEWAY_PREFIX}"
    with deployment(callback_public_url=public) as running:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            async with serving(path_prefix_gateway(running.callback_direct_url, http), sock):
                yield running, public


async def test_the_callback_behind_a_path_prefix_keeps_its_cookies_and_redirects() -> None:
    async with gateway_in_front_of_a_callback() as (running, public):
        jwt = running.cloud.issue_user_jwt("prefix-user")
        pages = []

        async def person(link: str) -> None:
            browser = LinkFollowingBrowser()
            pages.append(await browser.approve_and_sign_in(link, "prefix-user"))
            cookie_paths = {cookie.path for cookie in browser.http.cookies.jar}
            pages.append(cookie_paths)
            await browser.aclose()

        reply = await asyncio.wait_for(stream_chat(running.agent_url, jwt, DINGTALK_PROMPT.format(
            text="behind a gateway", doc="docPrefix1"), on_link=person), timeout=60)
        written = await document_content_at(running.cloud, "docPrefix1")
    landing, cookie_paths = pages
    assert str(landing.url).startswith(f"{public}/callback/signed-in?")
    assert page_title(landing) == "Authorization complete"
    assert f"{GATEWAY_PREFIX}/callback" in cookie_paths  # the public path, not the one the process sees
    assert "authorization_completed" in reply["types"]
    assert written == "behind a gateway"


async def test_a_flow_started_on_one_agent_is_completed_by_another_agents_callback() -> None:
    """Two agent instances whose mounted /callback browsers can reach: APP_REDIRECT_URI names the second, so
    the flow the first one waits for is completed there, and the first one's stream goes on."""
    with ExitStack() as stack:
        cloud = stack.enter_context(start_local_cloud())
        first_port, second_port = free_port(), free_port()
        public = f"http://127.0.0.1:{second_port}"
        cloud.register_return_url(f"{public}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": public, "AUTHORIZATION_TIMEOUT_SECONDS": "60"}
        first = stack.enter_context(app_process(env, port=first_port))
        stack.enter_context(app_process(env, port=second_port))
        jwt = cloud.issue_user_jwt("scaled-out")
        landing = []

        async def person(link: str) -> None:
            browser = LinkFollowingBrowser()
            landing.append(await browser.approve_and_sign_in(link, "scaled-out"))
            await browser.aclose()

        reply = await asyncio.wait_for(stream_chat(first, jwt, DINGTALK_PROMPT.format(
            text="two instances", doc="docScale1"), on_link=person), timeout=60)
        written = await document_content_at(cloud, "docScale1")
    assert str(landing[0].url).startswith(f"{public}/callback/signed-in?")
    assert page_title(landing[0]) == "Authorization complete"
    assert "Wrote 13 characters" in reply["text"] and written == "two instances"


async def test_approving_any_link_ends_every_waiting_flow_of_that_user_on_every_instance() -> None:
    """The same user asks on agent A, then on agent B, and approves only B's link: A's stream ends as soon
    as its vault probe sees the token (far sooner than its 60 s authorization timeout), and no link is
    shown twice."""
    with deployment(agents=2) as running:
        jwt = running.cloud.issue_user_jwt("two-tabs")
        link_on_a = asyncio.Event()
        links: list[str] = []

        async def remember_link(link: str) -> None:
            links.append(link)
            link_on_a.set()

        async def approve(link: str) -> None:
            links.append(link)
            browser = LinkFollowingBrowser()
            assert page_title(await browser.approve_and_sign_in(link, "two-tabs")) == "Authorization complete"
            await browser.aclose()

        first_stream = asyncio.create_task(stream_chat(running.agent_urls[0], jwt, DINGTALK_PROMPT.format(
            text="from tab A", doc="docTabA"), on_link=remember_link))
        await asyncio.wait_for(link_on_a.wait(), 30)
        on_b = await asyncio.wait_for(stream_chat(running.agent_urls[1], jwt, DINGTALK_PROMPT.format(
            text="from tab B", doc="docTabB"), on_link=approve), timeout=60)
        on_a = await asyncio.wait_for(first_stream, timeout=30)
        documents = [await document_content_at(running.cloud, doc) for doc in ("docTabA", "docTabB")]
    assert len(links) == 2 and links[0] != links[1]
    assert "authorization_completed" in on_b["types"] and "authorization_completed" in on_a["types"]
    assert documents == ["from tab A", "from tab B"]


async def test_behind_the_gateway_a_large_jwt_and_the_switch_to_the_right_user_complete() -> None:
    """Behind the path prefix: a 2,800-character JWT's flow, opened first by a browser that signs in as
    someone else, lands on the prefixed "Wrong user" page; its relative switch link works under the prefix,
    every cookie keeps the public path, and the right user completes the same stream."""
    async with gateway_in_front_of_a_callback() as (running, public):
        jwt = sized_user_jwt(running.cloud, "prefix-alice", 2800)
        seen = []

        async def wrong_then_right(link: str) -> None:
            browser = LinkFollowingBrowser()
            wrong = await browser.approve_and_sign_in(link, "prefix-bob")
            signin = await browser.open(urljoin(str(wrong.url), switch_href(wrong)))
            done = await browser.submit(signin, "sign-in", username="prefix-alice")
            seen.extend([wrong, done, {(c.name, c.path) for c in browser.http.cookies.jar}])
            await browser.aclose()

        reply = await asyncio.wait_for(stream_chat(running.agent_url, jwt, DINGTALK_PROMPT.format(
            text="switched behind a gateway", doc="docPrefixSwitch"), on_link=wrong_then_right), timeout=60)
        written = await document_content_at(running.cloud, "docPrefixSwitch")
    wrong, done, cookies = seen
    assert str(wrong.url) == f"{public}/callback/wrong-user" and page_title(wrong) == "Wrong user"
    assert page_title(done) == "Authorization complete"
    assert {path for _, path in cookies} == {f"{GATEWAY_PREFIX}/callback"}
    assert "authorization_completed" in reply["types"] and written == "switched behind a gateway"
