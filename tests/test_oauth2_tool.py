"""A new OAuth2 tool, one `@tool(OAuth2(...))` function handed to the app, runs end to end.

"Example Notes" is an API invented for this test: its server (below) accepts only the tokens Agent Identity's
emulator issued for its credential provider, and answers a revoked one with HTTP 401. The tool is one
function; the consent link, the wait, the resume and the re-authorization all come from the toolbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from unittest.mock import sentinel

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators import start_local_cloud
from emulators._server import listening_socket, serving
from emulators.agent_identity import CredentialProvider
from tests.support.app_server import serve_app
from tests.support.deployment import stream_chat
from tools import TOOLS
from tools.toolbox import Toolbox
from settings.tools import ProviderSettings, ToolSettings
from tools.tool import OAuth2, OAuth2Provider, ToolFailed, UserSession, tool

NOTES = OAuth2Provider(env_prefix="EXAMPLE_NOTES", label="Example Notes", api_base="https://notes.example.com")
CREDENTIAL_PROVIDER = "example-notes-oauth"
PROMPT = "Call the tool read_my_notes"
REFUSED_USERS = {"otto"}  # the notes API refuses every token of these users, however fresh


@tool(OAuth2(NOTES, ["notes.read"], purpose="Read your notes"))
async def read_my_notes(user: UserSession) -> str:
    """Read the titles of the signed-in user's notes."""
    response = await user.http.get("/v1/notes", headers={"Authorization": f"Bearer {user.access_token}"})
    if response.status_code == 401:
        raise ToolFailed("Example Notes refused the token.", "example_notes_refused", credential_rejected=True)
    if not response.is_success:
        raise ToolFailed("Example Notes refused the request.", "example_notes_refused")
    return "Your notes: " + ", ".join(response.json()["titles"])


@pytest.fixture
def product() -> Iterator[tuple[str, object]]:
    """The emulators with the notes provider configured in Agent Identity, the notes API, and the app."""
    sock = listening_socket()
    app_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with start_local_cloud(return_urls=[f"{app_url}/callback"]) as cloud:
        cloud.agent_identity.providers[CREDENTIAL_PROVIDER] = CredentialProvider(
            CREDENTIAL_PROVIDER, "Example Notes", ("notes.read",))

        async def notes(request: Request) -> Response:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            record = cloud.dingtalk_tokens.get(token)  # the registry Agent Identity issues provider tokens into
            if record is None or not record.valid or record.details.get("provider") != CREDENTIAL_PROVIDER \
                    or record.subject in REFUSED_USERS:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            return JSONResponse({"titles": [f"{record.subject}'s shopping list", "Ideas"]})

        with serving("example-notes", Starlette(routes=[Route("/v1/notes", notes)])) as notes_url:
            env = {**cloud.env, "APP_REDIRECT_URI": app_url, "EXAMPLE_NOTES_CREDENTIAL_PROVIDER_NAME":
                   CREDENTIAL_PROVIDER, "EXAMPLE_NOTES_API_BASE": notes_url}
            with serve_app(env, sock=sock, tools=[*TOOLS, read_my_notes]) as url:
                yield url, cloud


async def approve(link: str, jwt: str) -> None:
    """The user's browser: consent, then the app's own /callback (signed in with the user's JWT)."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as browser:
        await browser.get(link)
        redirect = await browser.post(link, data={"decision": "approve"})
        landing = await browser.get(redirect.headers["location"], headers={"Authorization": f"Bearer {jwt}"})
    assert landing.status_code == 200, landing.text


async def test_a_tool_written_with_the_decorator_alone_asks_consent_resumes_and_reauthorizes(product) -> None:
    url, cloud = product
    jwt = cloud.issue_user_jwt("nora")

    async def person(link: str) -> None:
        await approve(link, jwt)

    first = await stream_chat(url, jwt, PROMPT, on_link=person)
    assert first["types"] == ["tool_started", "authorization_required", "authorization_completed", "tool_finished"]
    assert "Read your notes" in first["text"] and "nora's shopping list" in first["text"]
    assert [e["ok"] for e in first["events"] if e["type"] == "tool_finished"] == [True]

    again = await stream_chat(url, jwt, PROMPT)  # the token is cached: no link
    assert "authorization_required" not in again["types"] and "nora's shopping list" in again["text"]

    assert cloud.dingtalk_tokens.revoke_subject("nora") == 1
    renewed = await stream_chat(url, jwt, PROMPT, on_link=person)
    assert renewed["types"].count("authorization_required") == 1  # exactly one forced re-authorization
    assert "nora's shopping list" in renewed["text"]


async def test_a_provider_that_keeps_refusing_gets_one_renewal_then_a_clear_answer(product) -> None:
    url, cloud = product
    jwt = cloud.issue_user_jwt("otto")
    links: list[str] = []

    async def person(link: str) -> None:
        links.append(link)
        await approve(link, jwt)

    reply = await stream_chat(url, jwt, PROMPT, on_link=person)
    assert len(links) == 2  # the first consent and one renewal, then no third link
    finished = [e for e in reply["events"] if e["type"] == "tool_finished"]
    assert [(e["ok"], e["code"]) for e in finished] == [(False, "example_notes_authorization_rejected")]
    assert "Example Notes refused the user's authorization even after it was renewed." in reply["text"]


def test_a_tool_without_a_docstring_is_refused_when_the_tools_are_built() -> None:
    """Its docstring is what the model reads to choose it: without one the app does not start."""

    @tool(OAuth2(NOTES, ["notes.read"], purpose="Read your notes"))
    async def undocumented(user: UserSession) -> str:
        return "never called"

    settings = ToolSettings(oauth2={NOTES.env_prefix: ProviderSettings(CREDENTIAL_PROVIDER, NOTES.api_base)})
    # The tool is refused before it could ever ask identity/ for a token: no identity service is needed.
    with pytest.raises(ValueError, match="the tool undocumented has no docstring"):
        Toolbox(sentinel.no_identity, settings, [undocumented])
