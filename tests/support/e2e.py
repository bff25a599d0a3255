"""The product running end to end for tests: emulators + app.py on 127.0.0.1, and a witness for leaks.

One `Product` per pytest session (started by the first test that needs it, stopped when pytest ends):
the local cloud, with the app's own `/callback` registered as the return URL, and the app served as
`python app.py` serves it (tests/support/app_server.py). A second app on the same cloud, with a one-second
authorization timeout, is started on demand.

`Witness` keeps every response body a test read, every log record, and knows every secret the emulators
issued, so test_leaks.py can prove none of them escaped.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from emulators import LocalCloud, start_local_cloud
from emulators._server import listening_socket
from server.logs import JsonFormatter
from tests.support.app_server import serve_app

PATIENT_TIMEOUT_SECONDS = "30"
IMPATIENT_TIMEOUT_SECONDS = "1"


class Witness(logging.Handler):
    """Everything that left the product during the tests: response bodies and log lines."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.bodies: list[str] = []
        self.log_lines: list[str] = []
        self.user_jwts: set[str] = set()
        self.json_format = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record must not break the test run
            text = str(record.msg)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.log_lines.append(f"{record.name} {text}")
        self.log_lines.append(self.json_format.format(record))  # as production writes it (LOG_FORMAT=json)

    def saw(self, body: str) -> str:
        self.bodies.append(body)
        return body


class Product:
    """The emulators and the app, wired so the consent redirect reaches the app's real /callback."""

    def __init__(self) -> None:
        self.witness = Witness()
        self._stack = ExitStack()
        # Both ports are held from now on: the cloud starting next must not be handed either of them.
        self._sockets = {"patient": listening_socket(), "impatient": listening_socket()}
        for sock in self._sockets.values():
            self._stack.callback(sock.close)  # for an app never started; closing twice is harmless
        self._urls = {name: f"http://127.0.0.1:{sock.getsockname()[1]}"
                      for name, sock in self._sockets.items()}
        self.cloud: LocalCloud = self._stack.enter_context(
            start_local_cloud(return_urls=[f"{url}/callback" for url in self._urls.values()]))
        self._running: dict[str, str] = {}
        self.url = self.app_url("patient")

    def app_url(self, name: str = "patient") -> str:
        """The base URL of the app `name` ("patient", or "impatient": one-second authorization timeout)."""
        if name not in self._running:
            timeout = PATIENT_TIMEOUT_SECONDS if name == "patient" else IMPATIENT_TIMEOUT_SECONDS
            env = {**self.cloud.env, "APP_REDIRECT_URI": self._urls[name],
                   "AUTHORIZATION_TIMEOUT_SECONDS": timeout, "STREAM_KEEPALIVE_SECONDS": "0.5"}
            self._running[name] = self._stack.enter_context(serve_app(env, sock=self._sockets[name]))
        return self._running[name]

    def user_jwt(self, sub: str) -> str:
        token = self.cloud.issue_user_jwt(sub)
        self.witness.user_jwts.add(token)
        return token

    def issued_secrets(self) -> dict[str, set[str]]:
        """Every secret the emulators handed out or hold, by kind (Agent Identity's `/emulator/issued`)."""
        issued = self.cloud.issued()
        sts = set()
        for credential in issued["sts_credentials"]:
            sts |= {credential["access_key_secret"], credential["security_token"]}
        return {"user JWT": set(self.witness.user_jwts),
                "workload access token": {grant["token"] for grant in issued["workload_access_tokens"]},
                "DingTalk OAuth2 token": {token["token"] for token in issued["provider_tokens"]},
                "STS secret or security token": sts,
                "AccessKey secret": {self.cloud.info["access_key_secret"]},
                "model API key": {self.cloud.env["MODEL_API_KEY"]},
                "state secret": {self.cloud.env["IDENTITY_STATE_SECRET"]}}

    @contextmanager
    def capturing_logs(self) -> Iterator[Product]:
        """Record every log record (DEBUG and up) while the block runs: only during our own test modules,
        so the rest of the suite keeps its logging untouched."""
        root = logging.getLogger()
        saved_level = root.level
        root.setLevel(logging.DEBUG)
        root.addHandler(self.witness)
        try:
            yield self
        finally:
            root.removeHandler(self.witness)
            root.setLevel(saved_level)

    def stop(self) -> None:
        self._stack.close()


_product: Product | None = None


def shared_product(pytestconfig: Any) -> Product:
    """The session's Product, started on first use and stopped when pytest finishes. Test modules use it as

        @pytest.fixture(scope="module")
        def product(pytestconfig):
            with shared_product(pytestconfig).capturing_logs() as product:
                yield product
    """
    global _product
    if _product is None:
        _product = Product()
        pytestconfig.add_cleanup(_stop_product)
    return _product


def _stop_product() -> None:
    global _product
    if _product is not None:
        _product.stop()
        _product = None


# --- a user's side of the conversation ------------------------------------------------------------------


@dataclass
class Reply:
    """What the client got: the text, the agent events, how it finished, and the raw chunks."""

    text: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None

    def event_types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def link(self) -> str:
        return next(e["url"] for e in self.events if e["type"] == "authorization_required")


class User:
    """A signed-in user talking to the app with the `openai` SDK (their JWT is the API key)."""

    def __init__(self, product: Product, sub: str, app: str = "patient") -> None:
        self.product, self.sub = product, sub
        self.jwt = product.user_jwt(sub)
        self.app_url = product.app_url(app)
        self.client = openai.AsyncOpenAI(base_url=f"{self.app_url}/openai/v1", api_key=self.jwt, max_retries=0,
                                         timeout=60)

    async def chat_stream(self, prompt: str,
                          on_link: Callable[[str], Awaitable[None]] | None = None) -> Reply:
        """Stream one turn; when a link arrives, `on_link(url)` runs while the stream stays open."""
        reply, text = Reply(), []
        stream = await self.client.chat.completions.create(
            model="qwen-plus", messages=[{"role": "user", "content": prompt}], stream=True)
        async for chunk in stream:
            self.product.witness.saw(chunk.model_dump_json())
            event = (chunk.model_extra or {}).get("agent_event")
            if event:
                reply.events.append(event)
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                reply.finish_reason = choice.finish_reason or reply.finish_reason
            if event and event["type"] == "authorization_required" and on_link is not None:
                await on_link(event["url"])
        reply.text = "".join(text)
        return reply

    async def agui_stream(self, prompt: str,
                          on_link: Callable[[str], Awaitable[None]] | None = None) -> Reply:
        """One AG-UI run (`POST /ag-ui/agent`); `on_link(url)` runs when the authorization event arrives.
        `Reply.events` holds the `agent_event`s of the CUSTOM events; `finish_reason` the last event's type."""
        reply, text = Reply(), []
        body = {"threadId": f"thread-{self.sub}", "runId": uuid.uuid4().hex,
                "messages": [{"id": "u1", "role": "user", "content": prompt}]}
        async with httpx.AsyncClient(timeout=60) as http, http.stream(
                "POST", f"{self.app_url}/ag-ui/agent", json=body,
                headers={"Authorization": f"Bearer {self.jwt}"}) as response:
            async for line in response.aiter_lines():
                self.product.witness.saw(line)
                event = json.loads(line.removeprefix("data: ")) if line.startswith("data: ") else {}
                if event.get("type") == "CUSTOM":
                    reply.events.append(event["value"])
                    if event["name"] == "authorization_required" and on_link is not None:
                        await on_link(event["value"]["url"])
                text.append(event.get("delta", "") if event.get("type") == "TEXT_MESSAGE_CONTENT" else "")
                reply.finish_reason = event.get("type", reply.finish_reason)
        reply.text = "".join(text)
        return reply

    async def chat(self, prompt: str) -> Reply:
        """One non-stream turn."""
        completion = await self.client.chat.completions.create(
            model="qwen-plus", messages=[{"role": "user", "content": prompt}])
        self.product.witness.saw(completion.model_dump_json())
        choice = completion.choices[0]
        return Reply(text=choice.message.content or "", events=list((completion.model_extra or {}).get(
            "agent_events") or []), finish_reason=choice.finish_reason)

    async def answer_consent(self, url: str, decision: str = "approve") -> httpx.Response:
        """What the user's browser does: open the consent page, click, follow the redirect to our callback
        (identified by the user's JWT as a Bearer header; the browser test uses the session cookie)."""
        async with httpx.AsyncClient(timeout=30) as browser:
            page = await browser.get(url)
            assert page.status_code == 200 and "Approve" in page.text, page.text
            redirect = await browser.post(url, data={"decision": decision})
            assert redirect.status_code == 302
            location = redirect.headers["location"]
            assert location.startswith(f"{self.app_url}/callback"), location
            landing = await browser.get(location, headers={"Authorization": f"Bearer {self.jwt}"})
        self.product.witness.saw(page.text)
        self.product.witness.saw(landing.text)
        return landing

    async def approve(self, url: str) -> None:
        landing = await self.answer_consent(url, "approve")
        assert landing.status_code == 200, landing.text

    async def aclose(self) -> None:
        await self.client.close()


async def document_content(product: Product, doc_key: str) -> str | None:
    return await document_content_at(product.cloud, doc_key)


async def document_content_at(cloud: LocalCloud, doc_key: str) -> str | None:
    """What the emulated DingTalk holds for `doc_key` (None if never written)."""
    async with httpx.AsyncClient(trust_env=False, verify=cloud.ssl_context()) as http:
        response = await http.get(f"{cloud.url('dingtalk')}/emulator/documents/{doc_key}")
    return response.json()["content"] if response.status_code == 200 else None


async def dingtalk_faults(product: Product, **faults: Any) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{product.cloud.url('dingtalk')}/emulator/faults",
                                   json={"match": "overwriteContent", **faults})
        response.raise_for_status()


@pytest.fixture(scope="module")
def product(pytestconfig: Any) -> Iterator[Product]:
    """The session's Product, its logs witnessed while the test module runs."""
    with shared_product(pytestconfig).capturing_logs() as running:
        yield running


@pytest.fixture
async def user_named(product: Product) -> AsyncIterator[Callable[..., User]]:
    """Makes users (`user_named("sub")`, app "patient" or "impatient"), closed after the test."""
    users: list[User] = []

    def make(sub: str, app: str = "patient") -> User:
        users.append(User(product, sub, app))
        return users[-1]

    yield make
    for user in users:
        await user.aclose()
