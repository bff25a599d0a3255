"""The consent journey against an OpenID Provider nobody here wrote: panva/oidc-provider (OpenID Certified),
pinned in tests/oidc_provider/package-lock.json and installed by scripts/test with `npm ci`. The user's JWT
comes from it (an ID token from its authorization code flow), Agent Identity's emulator trusts its JWKS, and
the callback signs the browser in there through its own login and consent pages; then the same chat stream
goes on. What only our IdP emulator would accept cannot pass here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from alibabacloud_agentidentitydata20251127 import models as ai
from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils_models import Config

from emulators import ExternalIdp, start_local_cloud
from sandbox.process import app_process, free_port
from tests.deployment import DINGTALK_PROMPT, LinkFollowingBrowser, page_title, stream_chat
from tests.e2e_harness import document_content_at

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_DIR = ROOT / "tests" / "oidc_provider"
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


def test_the_emulators_cli_trusts_the_users_of_an_outside_provider(tmp_path: Path) -> None:
    """`python -m emulators --users-issuer ...`: the provider's JWKS comes from its discovery document, the env
    block points the product at it, and the emulated Agent Identity accepts its ID tokens and only those."""
    secret = secrets.token_urlsafe(24)
    ready = tmp_path / "cloud.json"
    with users_app() as app_redirect, oidc_provider(free_port(), [app_redirect], secret, tmp_path) as issuer:
        emulators = subprocess.Popen(
            [sys.executable, "-m", "emulators", "--ready-file", str(ready), "--users-issuer", issuer,
             "--users-client-id", CLIENT_ID, "--users-client-secret", secret],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            info = _wait_for_ready_file(ready, emulators)
            env = info["env"]
            assert env["INBOUND_JWKS_URL"] == f"{issuer}/jwks"  # the provider's jwks_uri, from discovery
            assert (env["INBOUND_JWT_ISSUER"], env["INBOUND_JWT_AUDIENCE"]) == (issuer, CLIENT_ID)
            assert (env["CALLBACK_OIDC_CLIENT_ID"], env["CALLBACK_OIDC_CLIENT_SECRET"]) == (CLIENT_ID, secret)

            outside_jwt = await_(sign_in_as("cli-user", issuer, app_redirect, secret))
            local_jwt = httpx.post(f"{info['idp_url']}/token", verify=info["ca_file"], trust_env=False,
                                   data={"grant_type": "password", "username": "cli-user"}).json()["id_token"]
            data = DataClient(Config(access_key_id=info["access_key_id"],
                                     access_key_secret=info["access_key_secret"],
                                     endpoint=info["agent_identity_url"], region_id=info["region"],
                                     ca=info["ca_file"]))

            def exchange(jwt: str) -> str:
                return data.get_workload_access_token_for_jwt(ai.GetWorkloadAccessTokenForJWTRequest(
                    workload_identity_name=info["workload_identity_name"], user_token=jwt,
                )).body.workload_access_token

            assert exchange(outside_jwt)
            with pytest.raises(ClientException) as refused:
                exchange(local_jwt)
            assert refused.value.code == "InvalidParameter.JsonWebToken"
        finally:
            emulators.send_signal(signal.SIGTERM)
            _, stderr = emulators.communicate(timeout=30)
    assert emulators.returncode == 0, stderr
    assert f"users from      {issuer}" in stderr and secret not in stderr


def test_the_emulators_cli_names_what_is_missing_for_an_outside_provider(tmp_path: Path) -> None:
    for args, complaint in ((["--users-client-id", "x"], "need --users-issuer"),
                            (["--users-issuer", "http://127.0.0.1:9/"], "needs --users-client-id"),
                            (["--users-issuer", f"http://127.0.0.1:{free_port()}", "--users-client-id", "x"],
                             "could not read")):
        done = subprocess.run([sys.executable, "-m", "emulators", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and complaint in done.stderr, done.stderr


@contextmanager
def users_app() -> Iterator[str]:
    """The users' own app, where the provider sends the browser back with the code: any page will do."""

    class Landing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Landing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/back"
    finally:
        server.shutdown()
        server.server_close()


def _wait_for_ready_file(path: Path, process: subprocess.Popen[str]) -> dict:
    deadline = time.monotonic() + 30
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"emulators did not become ready: {process.communicate()[1]}")
        time.sleep(0.05)
    return json.loads(path.read_text())


def await_(coroutine: Awaitable[str]) -> str:
    """Run a coroutine from a synchronous test (the sign-in helper is async)."""
    return asyncio.run(coroutine)
