"""`JsonChatCompletions` under `ChatOpenAI`, against the model emulator: the same requests and answers as the
SDK's own typed path, with the SDK's retries and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from agent.completions import JsonChatCompletions
from agent.model import ModelEndpoint, build_chat_model, model_client
from agent.settings import AgentSettings
from emulators._server import serving
from emulators.model import ModelEmulator

API_KEY = "sk-completions-test"
MODEL = "qwen-plus"


@tool
async def write_dingtalk_document(document_id: str, content: str) -> str:
    """Overwrite a DingTalk document with markdown content."""
    return "written"


@pytest.fixture(scope="module")
def model() -> Iterator[tuple[ModelEmulator, str]]:
    emulator = ModelEmulator(API_KEY)
    with serving("model", emulator.app) as url:
        yield emulator, url


@pytest.fixture
async def control(model) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=model[1], timeout=5) as client:
        await client.post("/emulator/reset")
        await client.post("/emulator/requests/clear")
        yield client


def settings(url: str, retries: int = 0) -> AgentSettings:
    return AgentSettings.from_env({"MODEL_BASE_URL": f"{url}/v1", "MODEL_API_KEY": API_KEY,
                                   "MODEL_MAX_RETRIES": str(retries), "MODEL_TIMEOUT_SECONDS": "5"})


@pytest.fixture
async def ours(model, control) -> AsyncIterator[ChatOpenAI]:
    """The product's chat model, as `agent.model` builds it."""
    s = settings(model[1])
    client = model_client(s, ModelEndpoint(s.base_url, API_KEY))
    chat = build_chat_model(s, client)
    assert isinstance(chat.async_client, JsonChatCompletions)
    yield chat
    await client.close()


def sdk_typed(url: str, **fields) -> ChatOpenAI:
    """ChatOpenAI as it comes: the SDK's typed `chat.completions`."""
    return ChatOpenAI(model=MODEL, base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=5,
                      streaming=True, stream_usage=True, **fields)


async def merged(chat, messages) -> AIMessageChunk:
    total = None
    async for chunk in chat.astream(messages):
        total = chunk if total is None else total + chunk
    assert total is not None
    return total


CONVERSATIONS = {
    "plain": [SystemMessage("Be brief."), HumanMessage("Hello! What can you do for me?")],
    "tool call": [HumanMessage('Write "Helloworld" to DingTalk document doc123')],
    "chinese": [HumanMessage("帮我写入“Helloworld”到钉钉文档，文档ID：doc123")],
}


@pytest.mark.parametrize("name", CONVERSATIONS)
async def test_same_request_body_and_same_answer_as_the_sdk_path(model, control, ours, name) -> None:
    emulator, url = model
    messages = CONVERSATIONS[name]
    typed = sdk_typed(url).bind_tools([write_dingtalk_document])
    expected = await merged(typed, messages)
    got = await merged(ours.bind_tools([write_dingtalk_document]), messages)

    sdk_body, our_body = emulator.requests[-2:]
    assert our_body == sdk_body and our_body["stream"] is True and our_body["tools"]
    assert got.content == expected.content
    assert [(c["name"], c["args"]) for c in got.tool_calls] == [(c["name"], c["args"]) for c in expected.tool_calls]
    assert got.usage_metadata == expected.usage_metadata
    assert got.response_metadata.get("finish_reason") == expected.response_metadata.get("finish_reason")


async def test_extra_body_is_sent_as_the_sdk_sends_it(model, control) -> None:
    emulator, url = model
    s = settings(url)
    client = model_client(s, ModelEndpoint(s.base_url, API_KEY))
    try:
        # Qwen's switches (e.g. enable_thinking) travel in extra_body.
        chat = build_chat_model(s, client).model_copy(update={"extra_body": {"enable_thinking": False}})
        await merged(chat, [HumanMessage("hi")])
        await merged(sdk_typed(url, extra_body={"enable_thinking": False}), [HumanMessage("hi")])
    finally:
        await client.close()
    ours_body, sdk_body = emulator.requests[-2:]
    assert ours_body["enable_thinking"] is False and ours_body == sdk_body


async def test_http_errors_are_the_sdks_errors(model, control, ours) -> None:
    await control.post("/emulator/faults", json={"fail_next": 1, "fail_status": 500})
    with pytest.raises(openai.InternalServerError):
        await merged(ours, [HumanMessage("hi")])
    s = settings(model[1])
    client = model_client(s, ModelEndpoint(s.base_url, "sk-wrong"))
    try:
        wrong_key = build_chat_model(s, client)
        with pytest.raises(openai.AuthenticationError) as caught:
            await merged(wrong_key, [HumanMessage("hi")])
        assert "sk-wrong" not in str(caught.value)
    finally:
        await client.close()


async def test_the_sdks_retries_still_apply(model, control) -> None:
    s = settings(model[1], retries=1)
    client = model_client(s, ModelEndpoint(s.base_url, API_KEY))
    try:
        await control.post("/emulator/faults", json={"fail_next": 1, "fail_status": 503})
        answer = await merged(build_chat_model(s, client), [HumanMessage("hello there")])
    finally:
        await client.close()
    assert answer.content.startswith('I understood your message: "hello there"')
    assert (await control.get("/emulator/calls")).json()["POST /v1/chat/completions"] == 2


async def test_an_error_event_in_the_stream_raises_after_the_text_so_far(model, control, ours) -> None:
    await control.post("/emulator/stream", json={"error_after_chunks": 3})
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in ours.astream([HumanMessage("hello there")]):
            received.append(chunk.content)
    assert "".join(received) == "I understood "
    assert caught.value.body["code"] == "server_error"


async def test_calls_that_are_not_streamed_go_to_the_sdk(model, control, ours) -> None:
    completion = await ours.async_client.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices[0].message.content.startswith("I understood")
    assert ours.async_client.with_raw_response is ours.root_async_client.chat.completions.with_raw_response
