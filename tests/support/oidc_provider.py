"""An OpenID Provider nobody here wrote: panva/oidc-provider (OpenID Certified), pinned in
tests/oidc_provider/package-lock.json and installed by scripts/test with `npm ci`; and the users' own app that
signs a user in there (authorization code + PKCE) for the ID token they call the agent with."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from sandbox.browser import LinkFollowingBrowser
from tests.support.http_server import QuietHandler, serving_in_a_thread

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "oidc_provider"
NODE = shutil.which("node")
CLIENT_ID = "agentrun-callback"
needs_the_provider = pytest.mark.skipif(
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


@contextmanager
def users_app() -> Iterator[str]:
    """The users' own app, where the provider sends the browser back with the code: any page will do."""

    class Landing(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving_in_a_thread(Landing) as base_url:
        yield f"{base_url}/back"
