"""The product's documented curl call, byte for byte on the wire: a streamed DingTalk write whose first
run needs the user's consent.

What a `curl -N` user sees and what proxies in between need: the link chunk at once, SSE keep-alive comments
while the user is away consenting, then the same stream goes on to the answer and `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.support.e2e import Product, User, document_content, product  # noqa: F401 - fixture

KEEPALIVE = b": keep-alive"
DOCUMENTED_PROMPT = "帮我写入“Helloworld”到钉钉文档，文档ID：{doc}"


def frame_payload(frame: bytes) -> dict:
    return json.loads(frame.removeprefix(b"data: "))


async def test_documented_curl_body_streams_the_link_keeps_alive_and_finishes(product: Product) -> None:
    user = User(product, "curl-user")
    doc = "docCurl1"
    # The product docs' body: content as a list of parts, one carrying a `user_id` that must not be trusted.
    body = {"model": "qwen-plus", "stream": True, "messages": [{"role": "user", "content": [
        {"type": "text", "text": DOCUMENTED_PROMPT.format(doc=doc), "user_id": "someone-else"}]}]}
    frames: list[bytes] = []
    approval: asyncio.Task | None = None
    keepalives_before_consent = 0
    try:
        async with httpx.AsyncClient(timeout=60) as http, http.stream(
                "POST", f"{user.app_url}/openai/v1/chat/completions", params={"sessionId": "curl-session-1"},
                json=body, headers={"Authorization": f"Bearer {user.jwt}"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
            link = None
            async for line in response.aiter_lines():
                if not line:
                    continue
                frame = line.encode()
                frames.append(frame)
                product.witness.saw(line)
                if frame.startswith(b"data: {"):
                    event = frame_payload(frame).get("agent_event") or {}
                    if event.get("type") == "authorization_required":
                        link = event["url"]
                elif frame == KEEPALIVE and link and approval is None:
                    # The user is away at the consent page: the stream must stay visibly alive meanwhile.
                    keepalives_before_consent += 1
                    if keepalives_before_consent == 2:
                        approval = asyncio.create_task(user.approve(link))
        assert approval is not None, "no keep-alive arrived while the stream waited for consent"
        await approval
    finally:
        if approval is not None and not approval.done():
            approval.cancel()
        await user.aclose()

    assert frames[-1] == b"data: [DONE]"
    chunks = [frame_payload(f) for f in frames if f.startswith(b"data: {")]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    asked = next(c for c in chunks if (c.get("agent_event") or {}).get("type") == "authorization_required")
    assert asked["choices"][0]["delta"]["content"] == (
        f"Please click the link to authorize Write to DingTalk document: {asked['agent_event']['url']} \n\n")
    events = [c["agent_event"]["type"] for c in chunks if c.get("agent_event")]
    assert events.index("authorization_required") < events.index("authorization_completed")
    assert ("tool_finished" in events) and not any(
        "tool_calls" in choice["delta"] for c in chunks for choice in c["choices"]), "tools stay server-side"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}
    text = "".join(choice["delta"].get("content") or "" for c in chunks for choice in c["choices"])
    assert f"Wrote 10 characters to DingTalk document {doc}" in text
    assert await document_content(product, doc) == "Helloworld"
