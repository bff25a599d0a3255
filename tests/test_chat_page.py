"""The sandbox's chat page in headless Chromium: sign in, stream a chat, authorize through the button, the
consent page and the callback's sign-in at the IdP, and see the document's new content. Set CHAT_PAGE_SCREENSHOTS=images to refresh the README's
screenshots; otherwise they go to a temporary folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import Sandbox, start_sandbox
from sandbox.launcher import DEMO_DOCUMENT

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed (scripts/test "
                                "installs it with apt)")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with start_sandbox(port=0, callback_port=0) as running:
        yield running


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CHAT_PAGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_sign_in_chat_authorize_and_see_the_document(sandbox: Sandbox, shots: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 760})
            page = context.new_page()
            page.goto(sandbox.chat_url)
            page.get_by_label("User name").fill("bob")
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#who")).to_have_text("Signed in as bob")
            page.screenshot(path=shots / "sandbox-1-signed-in.png")

            page.get_by_role("button", name="Send").click()
            authorize = page.get_by_role("button", name="Authorize dingtalk-oauth")
            expect(authorize).to_be_visible(timeout=30_000)
            page.screenshot(path=shots / "sandbox-2-authorization-requested.png")

            with context.expect_page() as opened:
                authorize.click()
            consent = opened.value
            approve = consent.get_by_role("button", name="Approve")
            expect(approve).to_be_visible()
            consent.screenshot(path=shots / "sandbox-3-consent.png")
            approve.click()
            # The callback (its own process) signs this browser in at the IdP before it completes.
            consent.get_by_label("User name").fill("bob")
            consent.screenshot(path=shots / "sandbox-4-sign-in.png")
            consent.get_by_role("button", name="Sign in").click()
            expect(consent.locator("h1")).to_have_text("Authorization complete")

            expect(page.get_by_test_id("document-content")).to_have_text("Helloworld", timeout=30_000)
            expect(page.locator(".msg.assistant").last).not_to_be_empty()
            expect(page.locator("#log .error")).to_have_count(0)
            page.screenshot(path=shots / "sandbox-5-document-written.png")
        finally:
            browser.close()

    document = httpx.get(f"{sandbox.base_url}/sandbox/documents/{DEMO_DOCUMENT}", trust_env=False).json()
    assert document["content"] == "Helloworld"
