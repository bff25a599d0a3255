"""SIGTERM as the platform sends it, to `python app.py` as a real process: new connections are refused,
every stream waiting for the user's consent gets one last chunk saying the service is restarting, a stream
that is only answering may finish, and the process exits 0 within SHUTDOWN_GRACE_SECONDS. The consent given
afterwards is kept: asking again on a new process finds the token without a new link."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from typing import Any

import httpx

from sandbox.process import app_process, free_port
from tests.support.deployment import DINGTALK_PROMPT, LinkFollowingBrowser, page_title
from tests.support.reliability import set_faults

GRACE_SECONDS = 3.0
CHAT = "/openai/v1/chat/completions"


async def read_stream(http: httpx.AsyncClient, base: str, jwt: str, prompt: str,
                      link_seen: asyncio.Event | None = None) -> list[Any]:
    """Every `data:` payload of one streamed chat (JSON, or the string "[DONE]"), in order."""
    events: list[Any] = []
    body = {"model": "qwen-plus", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    async with http.stream("POST", f"{base}{CHAT}", json=body, headers={"Authorization": f"Bearer {jwt}"}) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
            if link_seen is not None and (events[-1].get("agent_event") or {}).get("type") == \
                    "authorization_required":
                link_seen.set()
    return events


def link_of(events: list[Any]) -> str:
    return next(e["agent_event"]["url"] for e in events if isinstance(e, dict)
                and (e.get("agent_event") or {}).get("type") == "authorization_required")


async def test_sigterm_ends_waiting_streams_with_a_last_chunk_and_exits_0_within_the_grace_period(
        fresh_cloud, tmp_path) -> None:
    port = free_port()
    env = {**fresh_cloud.env, "APP_REDIRECT_URI": f"http://127.0.0.1:{port}", "LOG_LEVEL": "INFO",
           "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS), "STREAM_KEEPALIVE_SECONDS": "0.5"}
    fresh_cloud.register_return_url(f"http://127.0.0.1:{port}/callback")
    users = [f"restart-{i}-{time.monotonic_ns()}" for i in range(3)]
    jwts = [fresh_cloud.issue_user_jwt(user) for user in users]
    started: list[subprocess.Popen[bytes]] = []
    with app_process(env, port=port, started=started, log_path=tmp_path / "app.log") as base:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            seen = [asyncio.Event() for _ in users]
            waiting = [asyncio.create_task(read_stream(http, base, jwt, DINGTALK_PROMPT.format(text="x", doc=f"d{i}"),
                                                       seen[i])) for i, jwt in enumerate(jwts)]
            await asyncio.wait_for(asyncio.gather(*(event.wait() for event in seen)), 20)
            set_faults(fresh_cloud, "model", latency_ms=1000)  # one more stream, only answering (slowly)
            answering = asyncio.create_task(read_stream(http, base, jwts[0], "hello"))
            await asyncio.sleep(0.5)
            stopping = time.monotonic()
            started[0].send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            try:
                refused = await http.get(f"{base}/health")
            except httpx.TransportError:
                refused = None
            ended = await asyncio.wait_for(asyncio.gather(*waiting), GRACE_SECONDS)
            answered = await asyncio.wait_for(answering, GRACE_SECONDS)
            exit_code = await asyncio.to_thread(started[0].wait, GRACE_SECONDS + 2)
            stopped_after = time.monotonic() - stopping
    set_faults(fresh_cloud, "model", latency_ms=0)
    assert refused is None  # no new connection once stopping
    for events in ended:
        last = events[-1]
        assert last["error"]["code"] == "service_restarting" and "ask again" in last["error"]["message"]
        assert "[DONE]" not in events
    assert answered[-1] == "[DONE]"
    assert exit_code == 0 and stopped_after < GRACE_SECONDS + 1.0, stopped_after

    # The user approves the link they were shown; a new process (same callback URL) finds the vaulted token.
    browser = LinkFollowingBrowser()
    with app_process(env, port=port) as base:
        page = await browser.approve_and_sign_in(link_of(ended[0]), users[0])
        await browser.aclose()
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            again = await read_stream(http, base, jwts[0], DINGTALK_PROMPT.format(text="x", doc="d0"))
    assert page_title(page) == "Authorization complete"
    assert again[-1] == "[DONE]"
    assert not [e for e in again if isinstance(e, dict) and (e.get("agent_event") or {}).get("type") ==
                "authorization_required"]
