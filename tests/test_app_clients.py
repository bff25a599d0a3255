"""The server through real OpenAI clients: the official `openai` SDK and LangChain's `ChatOpenAI`."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from openai import AsyncOpenAI

from tests.support.app_server import serve_app

IDENTITY_QUESTION = "Who am I on Alibaba Cloud?"


@pytest.fixture(scope="module")
def server(cloud):
    with serve_app(cloud.env | {"STREAM_KEEPALIVE_SECONDS": "5", "MODEL_MAX_RETRIES": "0"}) as base_url:
        yield base_url


@pytest.fixture
def client(server, fresh_cloud):
    return AsyncOpenAI(base_url=f"{server}/openai/v1", api_key=fresh_cloud.issue_user_jwt("alice"), max_retries=0)


async def test_non_stream_plain_answer(client):
    completion = await client.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": "hello there"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert 'I understood your message: "hello there"' in completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert completion.model == "qwen-plus"


async def test_stream_tool_turn_never_leaks_tool_calls(client, fresh_cloud):
    stream = await client.chat.completions.create(
        model="qwen-plus", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": IDENTITY_QUESTION}])
    chunks = [chunk async for chunk in stream]
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert all(not d.tool_calls for d in deltas), "agent-run tools must not reach the client as tool_calls"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    text = "".join(d.content or "" for d in deltas)
    assert "Done. get_alibaba_cloud_caller_identity returned:" in text
    assert "assumed-role" in text
    events = [c.model_extra.get("agent_event") for c in chunks if c.model_extra.get("agent_event")]
    assert [e["type"] for e in events] == ["tool_started", "tool_finished"]
    assert events[1] == {"type": "tool_finished", "tool": "get_alibaba_cloud_caller_identity", "ok": True}
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    model_calls = httpx.get(f"{fresh_cloud.url('model')}/emulator/calls").json()
    assert model_calls["POST /v1/chat/completions"] == 2  # the tool call, then the answer


async def test_product_curl_body_with_user_id_part(client, server, fresh_cloud):
    """The documented example body: content as a list of parts, with an untrusted `user_id`."""
    body = {"model": "qwen-plus", "stream": False, "messages": [
        {"role": "user", "content": [{"type": "text", "text": IDENTITY_QUESTION, "user_id": "bob"}]}]}
    response = httpx.post(f"{server}/openai/v1/chat/completions?sessionId=s-1", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {fresh_cloud.issue_user_jwt('alice')}"})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert "assumed-role" in payload["choices"][0]["message"]["content"]
    assert [e["type"] for e in payload["agent_events"]] == ["tool_started", "tool_finished"]
    sent = httpx.get(f"{fresh_cloud.url('model')}/emulator/requests").json()[-1]
    assert "bob" not in str(sent["messages"]), "the user_id field is dropped, never forwarded or trusted"


async def test_request_settings_reach_the_model(client, fresh_cloud):
    httpx.post(f"{fresh_cloud.url('model')}/emulator/requests/clear")
    completion = await client.chat.completions.create(
        model="qwen-max", temperature=0.3, max_tokens=3, messages=[{"role": "user", "content": "hello there"}])
    assert completion.choices[0].finish_reason == "length"
    sent = httpx.get(f"{fresh_cloud.url('model')}/emulator/requests").json()[-1]
    assert sent["temperature"] == 0.3
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 3
    # qwen-max is not a model this server offers (GET /models lists only its own), so the default is used.
    assert sent["model"] == "qwen-plus" and completion.model == "qwen-plus"


async def test_models_lists_the_configured_model(client):
    models = await client.models.list()
    assert [m.id for m in models.data] == ["qwen-plus"]


async def test_langchain_chat_openai_as_a_client(server, fresh_cloud):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="qwen-plus", base_url=f"{server}/openai/v1", max_retries=0,
                     api_key=fresh_cloud.issue_user_jwt("alice"))
    answer = await llm.ainvoke("hello there")
    assert 'I understood your message: "hello there"' in answer.content
    pieces = [chunk.content async for chunk in llm.astream(IDENTITY_QUESTION)]
    assert len([p for p in pieces if p]) > 3
    assert "assumed-role" in "".join(pieces)


async def test_two_concurrent_streams_interleave(client, fresh_cloud):
    """A slow stream does not hold up another: chunks of both arrive while the other is still going."""
    httpx.post(f"{fresh_cloud.url('model')}/emulator/stream", json={"token_delay_ms": 40})
    arrivals: list[tuple[str, float]] = []

    async def consume(name: str, prompt: str) -> str:
        stream = await client.chat.completions.create(
            model="qwen-plus", stream=True, messages=[{"role": "user", "content": prompt}])
        text = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((name, time.perf_counter()))
                text.append(chunk.choices[0].delta.content)
        return "".join(text)

    first, second = await asyncio.gather(consume("a", "hello from a, one two three four"),
                                         consume("b", "hello from b, five six seven eight"))
    assert "hello from a" in first and "hello from b" in second
    order = [name for name, _ in arrivals]
    switches = sum(1 for x, y in zip(order, order[1:]) if x != y)
    assert switches >= 4, f"streams ran one after the other: {''.join(order)}"
