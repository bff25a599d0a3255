"""The consent journey against an OpenID Provider nobody here wrote: panva/oidc-provider (OpenID Certified),
pinned in tests/oidc_provider/package-lock.json and installed by scripts/test with `npm ci`. The user's JWT
comes from it (an ID token from its authorization code flow), Agent Identity's emulator trusts its JWKS, and
the callback signs the browser in there through its own login and consent pages; then the same chat stream
goes on. What only our IdP emulator would accept cannot pass here.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
from collections.abc import Awaitable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from alibabacloud_agentidentitydata20251127 import models as ai
from alibabacloud_agentidentitydata20251127.client import Client as DataClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils_models import Config

from emulators import ExternalIdp, LocalCloud, start_local_cloud
from sandbox.process import app_process, free_port
from tests.support.deployment import (DINGTALK_PROMPT, LinkFollowingBrowser, page_title, stream_chat,
                                      switch_href)
from tests.support.e2e import document_content_at
from tests.support.emulators_cli import start_emulators, wait_for_ready_file
from tests.support.oidc_provider import CLIENT_ID, needs_the_provider, oidc_provider, sign_in_as, users_app

ROOT = Path(__file__).resolve().parent.parent

pytestmark = needs_the_provider


@dataclass
class CertifiedDeployment:
    issuer: str
    public: str  # the callback's public base URL
    agent: str
    cloud: LocalCloud
    app_redirect: str  # the user's own app, where it gets their ID token
    secret: str = field(repr=False)

    async def user_jwt(self, user: str) -> str:
        """The ID token the user's own app gets for `user` (they call the agent with it)."""
        return await sign_in_as(user, self.issuer, self.app_redirect, self.secret)


@contextmanager
def certified_deployment(tmp_path: Path) -> Iterator[CertifiedDeployment]:
    """The provider, the emulated cloud trusting its users, the callback and the agent as two processes."""
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
        yield CertifiedDeployment(issuer, public, agent, cloud, app_redirect, secret)


async def test_consent_with_a_certified_openid_provider(tmp_path: Path) -> None:
    with certified_deployment(tmp_path) as running:
        issuer, public, agent, cloud = running.issuer, running.public, running.agent, running.cloud
        jwt = await running.user_jwt("indie-user")
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


async def test_the_switch_to_another_user_makes_a_certified_provider_ask_again(tmp_path: Path) -> None:
    """The provider keeps its own session: a browser signed in there as Bob would be signed in as Bob again
    without a word. "Sign in as a different user" sends `prompt=login`, so it shows its login page, Alice
    signs in, and her stream goes on."""
    with certified_deployment(tmp_path) as running:
        jwt = await running.user_jwt("indie-alice")
        pages = []

        async def bob_then_alice(link: str) -> None:
            browser = LinkFollowingBrowser()
            login = await browser.submit(await browser.open(link), "approve")
            wrong = await browser.submit_first_form(await browser.submit_first_form(login, login="indie-bob",
                                                                                    password="any"))
            again = await browser.open(urljoin(str(wrong.url), switch_href(wrong)))
            done = await browser.submit_first_form(again, login="indie-alice", password="any")
            for _ in range(3):  # its consent page for Alice (a new account in its session), then back to us
                if not str(done.url).startswith(running.issuer):
                    break
                done = await browser.submit_first_form(done)
            pages.extend([wrong, again, done])
            await browser.aclose()

        reply = await stream_chat(running.agent, jwt, DINGTALK_PROMPT.format(
            text="switched", doc="docIndieSwitch"), on_link=bob_then_alice)
        written = await document_content_at(running.cloud, "docIndieSwitch")
    wrong, again, done = pages
    assert str(wrong.url) == f"{running.public}/callback/wrong-user" and page_title(wrong) == "Wrong user"
    assert str(again.url).startswith(f"{running.issuer}/interaction/") and 'name="password"' in again.text
    assert page_title(done) == "Authorization complete"
    assert "authorization_completed" in reply["types"] and written == "switched"


def test_the_emulators_cli_trusts_the_users_of_an_outside_provider(tmp_path: Path) -> None:
    """`python -m emulators --users-issuer ...`: the provider's JWKS comes from its discovery document, the env
    block points the product at it, and the emulated Agent Identity accepts its ID tokens and only those."""
    secret = "-" + secrets.token_urlsafe(24)  # begins with '-' on purpose: `--users-client-secret=S` takes it
    ready = tmp_path / "cloud.json"
    with users_app() as app_redirect, oidc_provider(free_port(), [app_redirect], secret, tmp_path) as issuer:
        emulators = start_emulators(tmp_path, "--ready-file", str(ready), "--users-issuer", issuer,
                                    "--users-client-id", CLIENT_ID, f"--users-client-secret={secret}")
        try:
            info = wait_for_ready_file(ready, emulators)
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


def await_(coroutine: Awaitable[str]) -> str:
    """Run a coroutine from a synchronous test (the sign-in helper is async)."""
    return asyncio.run(coroutine)
