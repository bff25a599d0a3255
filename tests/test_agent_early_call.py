"""The run's first model request, posted before the graph starts (`agent.early_call`), through the real
`create_agent` graph against the model emulator: taken by the model node when it is the same request,
cancelled otherwise, and early start switched off after a request that differed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage

from agent.early_call import EarlyStart, Outcome
from agent.graph import Agent, RunOptions, build_agent
from agent.model import ModelProvider
from agent.runner import AgentRunner, Finished, TextDelta
from agent.schemas import parse_request, to_langchain_messages
from agent.tokens import model_text_to
from tests.test_agent_completions import (
    control,
    model,
    product_model,
    sdk_typed,
    settings,
    write_dingtalk_document,
)

__all__ = ["control", "model"]  # fixtures, used by name

QUESTION = [HumanMessage("Hello! What can you do for me?")]


async def answer(agent: Agent, messages: list[Any]) -> str:
    """Run the graph; the text its model node streamed."""
    delivered: list[str] = []
    with model_text_to(delivered.append):
        async for _ in agent.graph.astream({"messages": messages}, stream_mode="updates"):
            pass
    return "".join(delivered)


async def received(emulator: Any, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(emulator.requests) < count:
        assert time.monotonic() < deadline, f"the model received {len(emulator.requests)} requests"
        await asyncio.sleep(0.005)


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_the_first_request_is_posted_before_the_graph_runs_and_the_model_node_takes_it(model, control):
    emulator, url = model
    early = EarlyStart()
    async with product_model(url) as chat:
        agent = build_agent(chat, [write_dingtalk_document], RunOptions())
        for _ in range(2):
            await control.post("/emulator/requests/clear")
            async with early.first_call(*agent.first_call(QUESTION)):
                await received(emulator, 1)  # the graph has not started yet
                text = await answer(agent, QUESTION)
            assert text.startswith('I understood your message: "Hello! What can you do for me?"')
            assert len(emulator.requests) == 1  # the model node posted nothing of its own
            assert emulator.requests[0]["messages"][0]["role"] == "system" and emulator.requests[0]["tools"]
    assert early.outcomes == {Outcome.TAKEN: 2} and not other_tasks()


async def test_every_run_of_the_runner_sends_its_first_request_early(model, control):
    emulator, url = model
    provider = ModelProvider(settings(url))
    runner = AgentRunner(provider, [write_dingtalk_document])
    try:
        for n in range(3):
            items = [item async for item in runner.run([HumanMessage(f"question {n}")], RunOptions(),
                                                       lambda emit: contextlib.nullcontext())]
            text = "".join(item.text for item in items if isinstance(item, TextDelta))
            assert text.startswith(f'I understood your message: "question {n}"')
            assert isinstance(items[-1], Finished)
    finally:
        await provider.aclose()
    assert len(emulator.requests) == 3 and runner.early_start.outcomes == {Outcome.TAKEN: 3}


PIXEL = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
CONVERSATION = {"model": "qwen-plus", "messages": [
    {"role": "system", "content": "Answer in one line."},
    {"role": "user", "content": [{"type": "text", "text": "Who am I on Alibaba Cloud?"}, PIXEL]},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "write_dingtalk_document", "arguments": '{"document_id": "d1", "content": "x"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "written"},
    {"role": "assistant", "content": "Done."},
    {"role": "user", "content": "And now what?", "name": "ann"}]}


async def test_a_whole_conversation_as_the_app_parses_it_is_taken_early(model, control):
    """Client-side system prompt, content parts, an earlier tool call and its result: the graph's state holds
    them as LangGraph made them, and the node's request is still the early one."""
    emulator, url = model
    provider = ModelProvider(settings(url))
    runner = AgentRunner(provider, [write_dingtalk_document])
    messages = to_langchain_messages(parse_request(CONVERSATION).messages)
    try:
        items = [item async for item in runner.run(messages, RunOptions(temperature=0.2, max_tokens=50),
                                                   lambda emit: contextlib.nullcontext())]
    finally:
        await provider.aclose()
    assert isinstance(items[-1], Finished) and runner.early_start.outcomes == {Outcome.TAKEN: 1}
    sent = emulator.requests[0]
    assert len(emulator.requests) == 1 and sent["temperature"] == 0.2 and len(sent["messages"]) == 7


async def test_a_tool_turn_takes_only_the_first_request_early(model, control):
    emulator, url = model
    write = [HumanMessage('Write "Helloworld" to DingTalk document doc123')]
    async with product_model(url) as chat:
        agent = build_agent(chat, [write_dingtalk_document], RunOptions())
        early = EarlyStart()
        async with early.first_call(*agent.first_call(write)):
            text = await answer(agent, write)
    # The tool call (taken early), then the answer to the tool's result (posted by the node).
    assert text and len(emulator.requests) == 2 and early.outcomes == {Outcome.TAKEN: 1}
    assert emulator.requests[1]["messages"][-1]["role"] == "tool"


async def test_a_first_call_that_differs_cancels_the_early_request_and_turns_early_start_off(
        model, control, caplog):
    emulator, url = model
    early = EarlyStart()
    async with product_model(url) as chat:
        agent = build_agent(chat, [write_dingtalk_document], RunOptions())
        with caplog.at_level(logging.WARNING, logger="agent.early_call"):
            async with early.first_call(*agent.first_call([HumanMessage("not what the graph will send")])):
                await received(emulator, 1)
                text = await answer(agent, QUESTION)
        assert text.startswith('I understood your message: "Hello! What can you do for me?"')
        assert [r["messages"][-1]["content"] for r in emulator.requests] == [
            "not what the graph will send", "Hello! What can you do for me?"]
        assert early.outcomes == {Outcome.DIFFERED: 1} and not early.enabled
        assert "could not be sent early (differed)" in caplog.text
        assert not other_tasks()

        await control.post("/emulator/requests/clear")  # off: the next run posts only from the graph
        async with early.first_call(*agent.first_call(QUESTION)):
            assert emulator.requests == []
            await answer(agent, QUESTION)
        assert len(emulator.requests) == 1


async def test_a_run_that_ends_before_its_first_call_cancels_the_early_request(model, control):
    emulator, url = model
    early = EarlyStart()
    async with product_model(url) as chat:
        agent = build_agent(chat, [write_dingtalk_document], RunOptions())
        with pytest.raises(asyncio.CancelledError):
            async with early.first_call(*agent.first_call(QUESTION)):
                await received(emulator, 1)
                raise asyncio.CancelledError  # e.g. the client left while the graph was starting
    assert early.outcomes == {Outcome.UNUSED: 1} and early.enabled and not other_tasks()


async def test_an_early_request_that_fails_fails_the_model_nodes_call_the_same_way(model, control):
    emulator, url = model
    await control.post("/emulator/faults", json={"fail_next": 1, "fail_status": 500})
    async with product_model(url) as chat:
        agent = build_agent(chat, [write_dingtalk_document], RunOptions())
        early = EarlyStart()
        with pytest.raises(openai.InternalServerError) as failed:
            async with early.first_call(*agent.first_call(QUESTION)):
                await answer(agent, QUESTION)
    # With no retries, a request of the node's own would have been answered (and recorded, unlike the fault).
    assert failed.value.status_code == 500 and emulator.requests == []
    assert early.outcomes == {Outcome.TAKEN: 1}


async def test_a_model_that_does_not_post_through_create_turns_early_start_off(model, control, caplog):
    early = EarlyStart()
    agent = build_agent(sdk_typed(model[1]), [write_dingtalk_document], RunOptions())  # the SDK's own client
    with caplog.at_level(logging.WARNING, logger="agent.early_call"):
        async with early.first_call(*agent.first_call(QUESTION)):
            await answer(agent, QUESTION)
    assert early.outcomes == {Outcome.NOT_SENT: 1} and not early.enabled
    assert "could not be sent early (not sent)" in caplog.text
