"""The authorization flow in a real browser: headless Chromium opens the streamed link, clicks Approve on
the consent page, follows the redirect to the app's /callback and lands on the success page; meanwhile the
same chat stream waits, then finishes with the document written.

Chromium is Debian's `chromium` package (scripts/test installs it), driven by Playwright with
`executable_path`, so no browser download is needed. Without Chromium the test is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator

import pytest

from tests.e2e_harness import Product, User, document_content, shared_product

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium; "
                                       "scripts/test does it)")


@pytest.fixture(scope="module")
def product(pytestconfig) -> Iterator[Product]:
    with shared_product(pytestconfig).capturing_logs() as product:
        yield product


@pytest.fixture
async def browser():
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_consent_in_chromium_continues_the_same_stream(product, browser):
    user = User(product, "browser-user")
    context = await browser.new_context()
    try:
        # Sign the browser in to the callback: the app sets its HttpOnly session cookie from the user's JWT.
        signed_in = await context.request.post(f"{user.app_url}/callback/session",
                                               headers={"Authorization": f"Bearer {user.jwt}"})
        assert signed_in.ok
        page = await context.new_page()
        seen: dict[str, str] = {}

        async def approve_in_browser(url: str) -> None:
            await page.goto(url)
            await page.get_by_role("button", name="Approve").click()
            await page.wait_for_url(f"{user.app_url}/callback**")
            await page.get_by_text("Authorization complete").wait_for()
            seen["landing"] = page.url
            seen["text"] = product.witness.saw(await page.content())

        reply = await asyncio.wait_for(
            user.chat_stream("帮我写入“Helloworld”到钉钉文档，文档ID：docBrowser1", on_link=approve_in_browser),
            timeout=60)
    finally:
        await context.close()
        await user.aclose()

    assert seen["landing"].startswith(f"{user.app_url}/callback?")
    assert "Write to DingTalk document" in seen["text"]
    types = reply.event_types()
    assert types.index("authorization_required") < types.index("authorization_completed")
    assert reply.finish_reason == "stop" and "Wrote 10 characters" in reply.text
    assert await document_content(product, "docBrowser1") == "Helloworld"
