"""The consent journey as it runs in production, in a real browser: the agent and the callback are two
processes (`python app.py`, `python app.py callback`), and headless Chromium starts with no cookie. It only
follows the streamed link, clicks Approve at the provider and signs in at the IdP; the callback then
completes the flow and the same chat stream goes on and writes the document.

Chromium is Debian's `chromium` package (scripts/test installs it), driven by Playwright with
`executable_path`, so no browser download is needed. Without Chromium the test is skipped, saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from tests.support.deployment import DINGTALK_PROMPT, Deployment, deployment, stream_chat
from tests.support.e2e import document_content_at
from tests.support.identity import sized_user_jwt

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def production() -> Iterator[Deployment]:
    with deployment() as running:
        yield running


@pytest.fixture
async def browser():
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def approve_and_fill_in(page, url: str, user: str) -> None:
    """Open the link, Approve at the provider, type `user` on the IdP's sign-in page."""
    await page.goto(url)
    await page.get_by_role("button", name="Approve").click()
    await page.get_by_label("User name").fill(user)


async def sign_in_and_see_it_complete(page) -> None:
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Authorization complete").wait_for()


async def test_a_new_browser_approves_signs_in_and_the_same_stream_goes_on(production, browser):
    jwt = production.cloud.issue_user_jwt("browser-user")
    context = await browser.new_context()  # no cookie, no header: only what a person's browser has
    seen: dict[str, str] = {}
    try:
        page = await context.new_page()

        async def approve_in_browser(url: str) -> None:
            await approve_and_fill_in(page, url, "browser-user")
            seen["signin"] = page.url  # the IdP's sign-in page
            await sign_in_and_see_it_complete(page)
            seen["landing"], seen["text"] = page.url, await page.content()

        reply = await asyncio.wait_for(stream_chat(production.agent_url, jwt, DINGTALK_PROMPT.format(
            text="Helloworld", doc="docBrowser1"), on_link=approve_in_browser), timeout=90)
    finally:
        await context.close()

    assert seen["signin"].startswith(production.cloud.browser_url("idp") + "/authorize?")
    assert seen["landing"].startswith(f"{production.public_url}/callback/signed-in?")
    assert "Write to DingTalk document" in seen["text"]
    assert reply["types"].index("authorization_required") < reply["types"].index("authorization_completed")
    assert "Wrote 10 characters" in reply["text"]
    assert await document_content_at(production.cloud, "docBrowser1") == "Helloworld"


async def test_a_2800_character_jwt_completes_consent_in_chromium(production, browser):
    """Its state (~3,950 characters) rides the IdP round trip in the sign-in cookie split in two: Chromium
    keeps both parts, and the flow completes."""
    jwt = sized_user_jwt(production.cloud, "large-token-user", 2800)
    assert 2790 <= len(jwt) <= 2810
    context = await browser.new_context()
    sizes: list[int] = []
    try:
        page = await context.new_page()

        async def approve_in_browser(url: str) -> None:
            await approve_and_fill_in(page, url, "large-token-user")
            sizes.extend(len(c["name"]) + len(c["value"]) for c in await context.cookies())
            await sign_in_and_see_it_complete(page)

        reply = await asyncio.wait_for(stream_chat(production.agent_url, jwt, DINGTALK_PROMPT.format(
            text="large token", doc="docLargeJwt"), on_link=approve_in_browser), timeout=90)
    finally:
        await context.close()
    assert len(sizes) >= 2 and max(sizes) <= 4000 and sum(sizes) > 4000  # split, none dropped
    assert "authorization_completed" in reply["types"]
    assert await document_content_at(production.cloud, "docLargeJwt") == "large token"


async def test_a_6kb_jwt_gets_user_token_too_large_and_no_link(production):
    jwt = sized_user_jwt(production.cloud, "huge-token-user", 6000)
    reply = await asyncio.wait_for(stream_chat(production.agent_url, jwt, DINGTALK_PROMPT.format(
        text="too large", doc="docHugeJwt")), timeout=60)
    finished = [e for e in reply["events"] if e["type"] == "tool_finished"]
    assert "authorization_required" not in reply["types"] and "http" not in reply["text"]
    assert finished and finished[-1]["ok"] is False and finished[-1]["code"] == "user_token_too_large"


async def test_bobs_browser_switches_to_alice_and_her_stream_goes_on(production, browser):
    """Bob's browser, signed in at the callback as Bob, opens Alice's link: "Wrong user" without the callback
    query in the address bar and without Alice's sub or e-mail; "Sign in as a different user" asks the IdP
    again (prompt=login), Alice signs in, and her same stream writes the document."""
    cloud = production.cloud
    bob, alice = "bob-browser", "alice-browser"
    context = await browser.new_context()
    seen: dict[str, str] = {}
    try:
        page = await context.new_page()

        async def bob_approves_his_own(url: str) -> None:
            await approve_and_fill_in(page, url, bob)
            await sign_in_and_see_it_complete(page)

        await asyncio.wait_for(stream_chat(production.agent_url, cloud.issue_user_jwt(bob),
                                           DINGTALK_PROMPT.format(text="Bob's", doc="docBobOwn"),
                                           on_link=bob_approves_his_own), timeout=90)

        async def alices_link_in_bobs_browser(url: str) -> None:
            await page.goto(url)
            await page.get_by_role("button", name="Approve").click()
            await page.get_by_role("heading", name="Wrong user").wait_for()
            seen["wrong_user_url"], seen["wrong_user"] = page.url, await page.content()
            await page.get_by_role("link", name="Sign in as a different user").click()
            await page.get_by_label("User name").fill(alice)
            seen["signin"] = page.url
            await sign_in_and_see_it_complete(page)

        alice_jwt = cloud.issue_user_jwt(alice, email="alice@example.com")
        reply = await asyncio.wait_for(stream_chat(production.agent_url, alice_jwt, DINGTALK_PROMPT.format(
            text="Alice's", doc="docAliceSwitch"), on_link=alices_link_in_bobs_browser), timeout=90)
    finally:
        await context.close()
    assert seen["wrong_user_url"] == f"{production.public_url}/callback/wrong-user"
    assert alice not in seen["wrong_user"] and "alice@example.com" not in seen["wrong_user"]
    assert "started by a different user" in seen["wrong_user"]
    assert seen["signin"].startswith(cloud.browser_url("idp") + "/authorize?")
    assert "prompt=login" in seen["signin"]
    assert reply["types"].count("authorization_required") == 1 and "authorization_completed" in reply["types"]
    assert await document_content_at(cloud, "docAliceSwitch") == "Alice's"
