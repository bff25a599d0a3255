"""`./scripts/get-jwt` as a user runs it: the command prints a sign-in URL, a real browser (Debian's Chromium,
driven by Playwright) signs in there, the provider sends it back to the command's loopback redirect, and the
command prints a verified ID token. Against our IdP emulator (a public client, any loopback port, RFC
8252) and against panva/oidc-provider (a confidential client, a registered fixed port): the token is one
the agent accepts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from emulators import start_local_cloud
from identity.context import Caller
from identity.jwt_verifier import JwtVerifier
from settings.identity import IdentitySettings
from sandbox.process import free_port
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.oidc_provider import CLIENT_ID, NODE, PROVIDER_DIR, oidc_provider

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"Chromium not found at {CHROMIUM} (scripts/test installs it)")


@asynccontextmanager
async def chromium_page() -> AsyncIterator[object]:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            yield await context.new_page()
        finally:
            await browser.close()


async def get_jwt(args: list[str], sign_in: Callable[[str], Awaitable[None]],
                  env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `./scripts/get-jwt ARGS --no-browser` (in this test run's virtualenv, which holds the scripts' set);
    `sign_in(url)` plays the person at the browser."""
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "get-jwt"), *args, "--no-browser", "--timeout", "60", cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VENV": sys.prefix, **(env or {})})
    assert process.stderr is not None and process.stdout is not None
    seen = []
    try:
        while not seen or not seen[-1].startswith("  http"):
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line, "".join(seen)
            seen.append(line)
        await sign_in(seen[-1].strip())
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, stdout.decode(), "".join(seen) + stderr.decode()


async def accepted_by_the_agent(token: str, env: dict[str, str]) -> Caller:
    """The caller the agent's own verification makes of `token` with these INBOUND_* settings."""
    settings = IdentitySettings.from_env({"AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": "wi",
                                          "IDENTITY_STATE_SECRET": "s" * 32, **env})
    verifier = JwtVerifier(settings)
    try:
        return await verifier.authenticate(f"Bearer {token}")
    finally:
        await verifier.aclose()


async def test_a_user_signs_in_at_the_emulated_idp_and_gets_a_jwt_the_agent_accepts() -> None:
    with start_local_cloud() as cloud:
        async with chromium_page() as page:
            landed = {}

            async def person(url: str) -> None:
                await page.goto(url)
                await page.get_by_label("User name").fill("jwt-user")
                await page.get_by_role("button", name="Sign in").click()
                await page.get_by_text("The terminal now has your ID token").wait_for()
                landed["url"] = page.url

            code, token, told = await get_jwt(
                ["--issuer", cloud.info["idp_issuer"], "--client-id", cloud.info["idp_audience"],
                 "--port", "0"],
                person, env={"SSL_CERT_FILE": cloud.ca_file})
        assert code == 0, told
        token = token.strip()
        caller = await accepted_by_the_agent(token, cloud.env)
    assert caller.sub == "jwt-user"  # the agent's own verification accepts it
    assert landed["url"].startswith("http://127.0.0.1:") and "/callback?" in landed["url"]
    assert "code_challenge_method=S256" in told and "nonce=" in told
    assert f"sub: jwt-user\naud: {cloud.info['idp_audience']}\n" in told and "expires: " in told
    assert token not in told  # the token alone is on stdout


@pytest.mark.skipif(not NODE or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir(),
                    reason="node or tests/oidc_provider/node_modules is missing (scripts/test runs `npm ci`)")
async def test_a_user_signs_in_at_a_certified_openid_provider_on_a_registered_port(tmp_path: Path) -> None:
    idp_port, port = free_port(), free_port()
    secret = "-" + secrets.token_urlsafe(24)  # a secret may begin with '-': the README's `--client-secret=S` takes it
    with oidc_provider(idp_port, [f"http://127.0.0.1:{port}/callback"], secret, tmp_path) as issuer:
        async with chromium_page() as page:

            async def person(url: str) -> None:
                await page.goto(url)
                await page.locator("input[name=login]").fill("indie-jwt-user")
                await page.locator("input[name=password]").fill("any")
                await page.locator("button[type=submit]").first.click()
                await page.locator("button[type=submit]").first.click()  # the provider's consent page
                await page.get_by_text("The terminal now has your ID token").wait_for()

            code, token, told = await get_jwt(["--issuer", issuer, "--client-id", CLIENT_ID,
                                               f"--client-secret={secret}", "--port", str(port)], person)
        assert code == 0, told
        caller = await accepted_by_the_agent(token.strip(), {"INBOUND_JWKS_URL": f"{issuer}/jwks",
                                                             "INBOUND_JWT_ISSUER": issuer,
                                                             "INBOUND_JWT_AUDIENCE": CLIENT_ID})
    assert caller.sub == "indie-jwt-user"
    assert f"redirect URI is http://127.0.0.1:{port}/callback" in told and secret not in told


async def test_a_refused_sign_in_exits_non_zero_and_says_why() -> None:
    with start_local_cloud() as cloud:
        async with chromium_page() as page:

            async def person(url: str) -> None:
                await page.goto(url)
                await page.get_by_role("button", name="Cancel").click()
                await page.get_by_text("Sign-in failed").wait_for()

            code, token, told = await get_jwt(
                ["--issuer", cloud.info["idp_issuer"], "--client-id", cloud.info["idp_audience"]], person,
                env={"SSL_CERT_FILE": cloud.ca_file})
    assert code == 1 and token == ""
    assert "get-jwt: the provider answered access_denied" in told
