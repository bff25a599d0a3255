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


async def test_a_new_browser_approves_signs_in_and_the_same_stream_goes_on(production, browser):
    jwt = production.cloud.issue_user_jwt("browser-user")
    context = await browser.new_context()  # no cookie, no header: only what a person's browser has
    seen: dict[str, str] = {}
    try:
        page = await context.new_page()

        async def approve_in_browser(url: str) -> None:
            await page.goto(url)
            await page.get_by_role("button", name="Approve").click()
            await page.get_by_label("User name").fill("browser-user")  # the IdP's sign-in page
            seen["signin"] = page.url
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_text("Authorization complete").wait_for()
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
