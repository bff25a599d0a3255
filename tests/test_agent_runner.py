"""The runner over the real model emulator: a stock LangChain chat model, the text from LangGraph's own
"messages" stream of the agent's model node, and nothing of a model that a tool runs."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import openai
import pytest

from alibabacloud_credentials.client import Client as CredentialClient
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletion

from agent.graph import RunOptions
from agent.model import DictChunkCompletions, ModelProvider
from agent.runner import AgentRunner, Finished, TextDelta, ToolArguments, ToolFinished, ToolStarted
from settings.agent import AgentSettings


def settings_for(cloud) -> AgentSettings:
    return AgentSettings.from_env({"MODEL_BASE_URL": cloud.env["MODEL_BASE_URL"],
                                   "MODEL_API_KEY": cloud.env["MODEL_API_KEY"], "MODEL_NAME": "qwen-plus"})


def no_scope(_emit):
    return contextlib.nullcontext()


async def requests_seen_by_the_model(cloud) -> list[dict]:
    async with httpx.AsyncClient(verify=cloud.ssl_context()) as http:
        return (await http.get(cloud.env["MODEL_BASE_URL"].removesuffix("/v1") + "/emulator/requests")).json()


async def test_one_agent_serves_every_request_with_that_request_s_model_settings(cloud):
    provider = ModelProvider(settings_for(cloud), CredentialClient())
    runner = AgentRunner(provider, [])
    chosen = RunOptions(model="qwen-max", temperature=0.1, max_tokens=7, stop=("END",), seed=3)
    for options in (chosen, RunOptions()):
        items = [item async for item in runner.run([HumanMessage("hello there")], options, no_scope)]
        assert isinstance(items[-1], Finished)
    first, second = (await requests_seen_by_the_model(cloud))[-2:]
    assert (first["model"], first["temperature"], first["max_completion_tokens"], first["stop"], first["seed"]) \
        == ("qwen-max", 0.1, 7, ["END"], 3)
    assert second["model"] == "qwen-plus" and not {"temperature", "max_completion_tokens", "stop", "seed"} & set(second)
    assert await runner.agent() is await runner.agent()  # compiled once
    shared = await provider.chat_model()
    assert isinstance(shared, ChatOpenAI)  # the stock class, from init_chat_model
    assert (shared.model_name, shared.temperature, shared.max_tokens) == ("qwen-plus", None, None)
    await provider.aclose()


async def test_the_text_is_the_agent_model_s_own_and_a_tool_s_model_stays_inside_the_tool(cloud):
    provider = ModelProvider(settings_for(cloud), CredentialClient())
    inner_model = await provider.chat_model()

    @tool
    async def get_alibaba_cloud_caller_identity() -> str:
        """Report which Alibaba Cloud identity this agent acts as."""
        inner = create_agent(inner_model, [])
        answer = await inner.ainvoke({"messages": [HumanMessage("a nested question nobody should see")]})
        return f"role-from-tool ({len(answer['messages'])} messages inside)"

    runner = AgentRunner(provider, [get_alibaba_cloud_caller_identity])
    items = [item async for item in runner.run([HumanMessage("Who am I on Alibaba Cloud?")], RunOptions(),
                                               no_scope)]
    text = "".join(item.text for item in items if isinstance(item, TextDelta))
    events = [item for item in items if not isinstance(item, TextDelta)]
    assert [type(item) for item in events] == [ToolStarted, ToolArguments, ToolFinished, Finished]
    started, arguments, finished = events[:3]
    assert started.call_id and arguments.call_id == finished.call_id == started.call_id  # one call, one id
    assert arguments.delta == "{}" and "role-from-tool" in finished.text
    assert "role-from-tool" in text  # the model quoted the tool's result to the user
    assert "nested question" not in text
    assert sum(isinstance(item, TextDelta) for item in items) > 1  # streamed, not one block at the end
    finished = items[-1]
    assert isinstance(finished, Finished) and finished.usage and finished.usage.total_tokens > 0
    await provider.aclose()


def test_one_setting_names_the_model_and_its_provider():
    assert (AgentSettings.from_env({"MODEL_API_KEY": "k"}).model_provider,
            AgentSettings.from_env({"MODEL_API_KEY": "k"}).model_name) == ("openai", "qwen-plus")
    other = AgentSettings.from_env({"MODEL_NAME": "anthropic:claude-sonnet-4-5"})
    assert (other.model_provider, other.model_name) == ("anthropic", "claude-sonnet-4-5")  # needs no MODEL_API_KEY
    same = AgentSettings.from_env({"MODEL_NAME": "openai:qwen-max", "MODEL_API_KEY": "k"})
    assert (same.model_provider, same.model_name) == ("openai", "qwen-max")


async def test_streamed_chunks_stay_dicts_and_everything_else_is_the_typed_sdk(cloud):
    sdk = openai.AsyncOpenAI(base_url=cloud.env["MODEL_BASE_URL"], api_key=cloud.env["MODEL_API_KEY"], max_retries=0)
    completions = DictChunkCompletions(sdk)
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hello there"}]}
    try:
        chunks = [chunk async for chunk in await completions.create(**body, stream=True)]
        assert all(isinstance(chunk, dict) for chunk in chunks)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]).startswith(
            "I understood your message")
        typed = await completions.create(**body)
        assert isinstance(typed, ChatCompletion) and typed.choices[0].message.content
        with pytest.raises(openai.AuthenticationError):  # the SDK's own errors, as on the typed path
            await DictChunkCompletions(sdk.with_options(api_key="wrong")).create(**body, stream=True)
    finally:
        await sdk.close()


async def test_the_first_requests_at_once_share_one_model_and_one_sdk_client(cloud):
    provider = ModelProvider(settings_for(cloud), CredentialClient())
    models = await asyncio.gather(*(provider.chat_model() for _ in range(8)))
    assert all(model is models[0] for model in models)
    sdk = models[0].root_async_client
    assert isinstance(sdk, openai.AsyncOpenAI) and not sdk.is_closed()
    await provider.aclose()
    assert sdk.is_closed()  # the one the provider closes
