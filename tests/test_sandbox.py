"""The local sandbox end to end, as a curl user meets it: the printed call streams, asks for authorization,
and after approval in the consent page and sign-in at the callback process the document holds the new
content."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import Sandbox, example_curl, start_sandbox
from sandbox.launcher import DEMO_DOCUMENT, EXAMPLE_PROMPT
from tests.support.deployment import LinkFollowingBrowser, page_title, stream_chat

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with start_sandbox(port=0, callback_port=0) as running:
        yield running


def test_the_printed_curl_is_the_documented_streamed_call(sandbox: Sandbox) -> None:
    command = example_curl(sandbox.base_url, sandbox.demo_jwt)

    assert command.startswith("curl -N ")
    assert f"{sandbox.base_url}/openai/v1/chat/completions?sessionId=" in command
    assert f'"Authorization: Bearer {sandbox.demo_jwt}"' in command
    body = json.loads(re.search(r"-d '(.*)'$", command).group(1))
    assert body["stream"] is True and body["messages"][0]["content"] == EXAMPLE_PROMPT


async def test_a_curl_user_authorizes_in_a_browser_and_the_same_stream_writes_the_document(
        sandbox: Sandbox) -> None:
    """The banner's journey: the curl stream shows the link; a browser with nothing but the link opens it,
    approves, is sent by the callback process to the IdP, signs in, and the stream finishes by itself."""
    pages = []

    async def person_with_a_browser(link: str) -> None:
        browser = LinkFollowingBrowser()
        pages.append(await browser.approve_and_sign_in(link, sandbox.demo_user))
        await browser.aclose()

    reply = await stream_chat(sandbox.base_url, sandbox.demo_jwt, EXAMPLE_PROMPT, on_link=person_with_a_browser)

    assert "Please click the link to authorize Write to DingTalk document: " in reply["text"]
    assert reply["types"][:2] == ["tool_started", "authorization_required"]
    assert "authorization_completed" in reply["types"]
    assert str(pages[0].url).startswith(f"{sandbox.callback_url}/callback/signed-in?")
    assert page_title(pages[0]) == "Authorization complete"
    async with httpx.AsyncClient(trust_env=False) as http:
        document = (await http.get(f"{sandbox.base_url}/sandbox/documents/{DEMO_DOCUMENT}")).json()
    assert document["content"] == "Helloworld"
    assert sandbox.demo_jwt not in reply["text"]


def test_ctrl_c_stops_everything_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", "0", "--callback-port", "0"], cwd=ROOT,
                               env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = ""
        for line in process.stdout:
            banner += line
            if "Ctrl-C stops everything" in line:
                break
        chat_url = re.search(r"Chat page:\s+(\S+)", banner).group(1)
        callback_url = re.search(r"(http://localhost:\d+)/callback", banner).group(1)
        assert httpx.get(chat_url, trust_env=False).status_code == 200
        assert httpx.get(f"{callback_url}/health", trust_env=False).json() == {"status": "ok"}
        assert "curl -N " in banner and "Authorization: Bearer ey" in banner

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "Sandbox stopped." in process.stderr.read()
        for stopped in (chat_url, f"{callback_url}/health"):
            with pytest.raises(httpx.ConnectError):
                httpx.get(stopped, trust_env=False)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
