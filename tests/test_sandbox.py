"""The local sandbox end to end, as a curl user meets it: the printed call streams, asks for authorization,
and after approval in the consent page and the app's own callback the document holds the new content."""

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

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with start_sandbox(port=0) as running:
        yield running


def test_the_printed_curl_is_the_documented_streamed_call(sandbox: Sandbox) -> None:
    command = example_curl(sandbox.base_url, sandbox.demo_jwt)

    assert command.startswith("curl -N ")
    assert f"{sandbox.base_url}/openai/v1/chat/completions?sessionId=" in command
    assert f'"Authorization: Bearer {sandbox.demo_jwt}"' in command
    body = json.loads(re.search(r"-d '(.*)'$", command).group(1))
    assert body["stream"] is True and body["messages"][0]["content"] == EXAMPLE_PROMPT


def _stream(sandbox: Sandbox, client: httpx.Client) -> Iterator[dict]:
    with client.stream("POST", f"{sandbox.base_url}/openai/v1/chat/completions?sessionId=test-curl",
                       headers={"Authorization": f"Bearer {sandbox.demo_jwt}"},
                       json={"model": "qwen-plus", "stream": True,
                             "messages": [{"role": "user", "content": EXAMPLE_PROMPT}]}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


def test_a_curl_user_authorizes_and_the_document_is_written(sandbox: Sandbox) -> None:
    text, events = "", []
    with httpx.Client(trust_env=False, timeout=60) as client, httpx.Client(trust_env=False, timeout=10) as browser:
        for chunk in _stream(sandbox, client):
            text += chunk["choices"][0]["delta"].get("content") or "" if chunk.get("choices") else ""
            event = chunk.get("agent_event")
            if event:
                events.append(event["type"])
            if event and event["type"] == "authorization_required":
                # The person opens the link, approves, and the provider sends the browser to our /callback.
                consent = browser.post(event["url"], data={"decision": "approve"})
                assert consent.status_code in (302, 303), consent.text
                callback = consent.headers["location"]
                assert callback.startswith(f"{sandbox.base_url}/callback?")
                # A browser without the session cookie is asked to sign in; with the user's JWT it completes.
                assert browser.get(callback).status_code == 401
                done = browser.get(callback, headers={"Authorization": f"Bearer {sandbox.demo_jwt}"})
                assert done.status_code == 200, done.text

    assert "Please click the link to authorize Write to DingTalk document: " in text
    assert events[:2] == ["tool_started", "authorization_required"] and "authorization_completed" in events
    document = httpx.get(f"{sandbox.base_url}/sandbox/documents/{DEMO_DOCUMENT}", trust_env=False).json()
    assert document["content"] == "Helloworld"
    assert sandbox.demo_jwt not in text


def test_ctrl_c_stops_everything_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = subprocess.Popen([sys.executable, "-m", "sandbox", "--port", "0"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = ""
        for line in process.stdout:
            banner += line
            if "Ctrl-C stops everything" in line:
                break
        chat_url = re.search(r"Chat page:\s+(\S+)", banner).group(1)
        assert httpx.get(chat_url, trust_env=False).status_code == 200
        assert "curl -N " in banner and "Authorization: Bearer ey" in banner

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "Sandbox stopped." in process.stderr.read()
        with pytest.raises(httpx.ConnectError):
            httpx.get(chat_url, trust_env=False)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
