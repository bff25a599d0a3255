"""The consent journey against an OpenID Provider nobody here wrote: panva/oidc-provider (OpenID Certified),
pinned in tests/oidc_provider/package-lock.json and installed by scripts/test with `npm ci`. The user's JWT
comes from it (an ID token from its authorization code flow), Agent Identity's emulator trusts its JWKS, and
the callback signs the browser in there through its own login and consent pages; then the same chat stream
goes on. What only our IdP emulator would accept cannot pass here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from emulators import ExternalIdp, start_local_cloud
from sandbox.process import app_process, free_port
from tests.support.deployment import DINGTALK_PROMPT, LinkFollowingBrowser, page_title, stream_chat
from tests.support.e2e import document_content_at

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
NODE = shutil.which("node")
CLIENT_ID = "agentrun-callback"

pytestmark = pytest.mark.skipif(
    not NODE or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir(),
    reason="node or tests/oidc_provider/node_modules is missing (scripts/test runs `npm ci` there)")


@contextmanager
def oidc_provider(port: int, redirect_uris: list[str], secret: str, workdir: Path) -> Iterator[str]:
    """Run the provider on 127.0.0.1:`port` with one confidential client; yields its issuer."""
    config = workdir / "provider.json"
    config.write_text(json.dumps({"port": port, "clients": [
        {"client_id": CLIENT_ID, "client_secret": secret, "redirect_uris": redirect_uris}]}))
    process = subprocess.Popen([NODE, "server.mjs", str(config)], cwd=PROVIDER_DIR, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in process.stdout or ():  # warnings (e.g. about the Node.js version) may come first
            output.append(line)
            if line.startswith("ready ") or len(output) > 20:
                break
        assert output and output[-1].startswith("ready "), f"the provider did not start: {''.join(output)}"
        yield output[-1].split()[1]
    finally:
        process.terminate()
        process.wait(10)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


async def sign_in_as(user: str, issuer: str, redirect_uri: str, secret: str) -> str:
    """The user's own app signs them in (authorization code + PKCE) and gets the ID token they call us with."""
    async with httpx.AsyncClient(trust_env=False) as http:
        metadata = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
    verifier, challenge = pkce_pair()
    browser = LinkFollowingBrowser()
    login = await browser.open(f"{metadata['authorization_endpoint']}?" + urlencode({
        "client_id": CLIENT_ID, "response_type": "code", "scope": "openid", "redirect_uri": redirect_uri,
        "state": "s", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"}))
    consent = await browser.submit_first_form(login, login=user, password="any")
    back = await browser.submit_first_form(consent)  # lands on the redirect URI with the code
    await browser.aclose()
    code = parse_qs(urlsplit(str(back.url)).query)["code"][0]
    async with httpx.AsyncClient(trust_env=False) as http:
        tokens = await http.post(metadata["token_endpoint"], auth=(CLIENT_ID, secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    return tokens.json()["id_token"]


async def test_consent_with_a_certified_openid_provider(tmp_path: Path) -> None:
    idp_port, callback_port, agent_port = free_port(), free_port(), free_port()
    public = f"http://127.0.0.1:{callback_port}"
    # The user's own app is stood in for by a page that answers any query: the agent's /health.
    app_redirect = f"http://127.0.0.1:{agent_port}/health"
    secret = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        issuer = stack.enter_context(oidc_provider(idp_port, [f"{public}/callback/signed-in", app_redirect], secret,
                                                   tmp_path))
        users = ExternalIdp(issuer=issuer, jwks_url=f"{issuer}/jwks", audience=CLIENT_ID, client_id=CLIENT_ID,
                            client_secret=secret)
        cloud = stack.enter_context(start_local_cloud(users_idp=users))
        cloud.register_return_url(f"{public}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": public, "AUTHORIZATION_TIMEOUT_SECONDS": "60"}
        stack.enter_context(app_process(env, "callback", port=callback_port))
        agent = stack.enter_context(app_process(env, port=agent_port))
        jwt = await sign_in_as("indie-user", issuer, app_redirect, secret)
        pages = []

        async def person(link: str) -> None:
            browser = LinkFollowingBrowser()
            consent = await browser.open(link)
            login = await browser.submit(consent, "approve")  # the callback sends the browser to the provider
            pages.append(login)
            grant = await browser.submit_first_form(login, login="indie-user", password="any")
            pages.append(await browser.submit_first_form(grant))
            await browser.aclose()

        reply = await stream_chat(agent, jwt, DINGTALK_PROMPT.format(text="certified", doc="docCertified"),
                                  on_link=person)
        written = await document_content_at(cloud, "docCertified")
    login, done = pages
    assert str(login.url).startswith(f"{issuer}/interaction/")
    assert str(done.url).startswith(f"{public}/callback/signed-in?")
    assert page_title(done) == "Authorization complete"
    assert "authorization_completed" in reply["types"] and written == "certified"
