"""The scripted model over real HTTP, driven by the `openai` SDK and ChatOpenAI (langchain_openai)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from emulators._server import serving
from emulators.model import ModelEmulator

API_KEY = "sk-emulator-test"
MODEL = "qwen-plus"
ZH_WRITE = "帮我写入“Helloworld”到钉钉文档，文档ID：doc123"
EN_WRITE = 'Write "Helloworld" to DingTalk document doc123'
WRITE_ARGS = {"document_id": "doc123", "content": "Helloworld"}
Running = tuple[ModelEmulator, str]  # the emulator and its base URL


@tool
async def write_dingtalk_document(document_id: str, content: str) -> str:
    """Overwrite a DingTalk document with markdown content."""
    return "written"


@tool
async def get_alibaba_cloud_caller_identity() -> str:
    """Tell who the signed-in user is on Alibaba Cloud."""
    return "{}"


@tool
async def read_oss_object(bucket: str, key: str, region: str | None = None) -> str:
    """Read a text object from OSS."""
    return "text"


TOOLS = [write_dingtalk_document, get_alibaba_cloud_caller_identity, read_oss_object]
OPENAI_TOOLS = [{"type": "function",
                 "function": {"name": t.name, "description": t.description,
                              "parameters": t.args_schema.model_json_schema()}} for t in TOOLS]


@pytest.fixture(scope="module")
def model() -> Iterator[Running]:
    emulator = ModelEmulator(API_KEY)
    with serving("model", emulator.app) as url:
        yield emulator, url


@pytest.fixture
async def control(model: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=model[1], timeout=5) as client:
        await client.post("/emulator/reset")
        await client.post("/emulator/requests/clear")
        yield client


@pytest.fixture
async def client(model: Running, control: httpx.AsyncClient) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{model[1]}/v1", api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def chat(model: Running, control: httpx.AsyncClient) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, base_url=f"{model[1]}/v1", api_key=API_KEY, max_retries=0, timeout=5)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


async def test_plain_reply_non_stream(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=user("Hello there"))
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert '"Hello there"' in choice.message.content
    assert choice.message.tool_calls is None
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


async def test_plain_reply_streams_word_by_word_in_openai_format(client: openai.AsyncOpenAI) -> None:
    messages = user("Hello there")
    whole = await client.chat.completions.create(model=MODEL, messages=messages)
    chunks = await collect(await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 5, "the reply must arrive in several pieces"
    assert "".join(texts) == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_ends_with_done_and_event_stream_headers(model: Running,
                                                              control: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": user("hi"), "stream": True}
    async with control.stream("POST", "/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = [line async for line in response.aiter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    assert "usage" not in json.loads(events[-2][6:]), "no usage unless stream_options.include_usage"


@pytest.mark.parametrize("prompt", [ZH_WRITE, EN_WRITE, '帮我写入"Helloworld"到钉钉文档,文档ID:doc123',
                                    "write “Helloworld” into the DingTalk doc: doc123"])
async def test_write_prompt_calls_the_dingtalk_tool_non_stream(chat: ChatOpenAI, prompt: str) -> None:
    message = await chat.bind_tools(TOOLS).ainvoke([HumanMessage(prompt)])
    assert isinstance(message, AIMessage)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("write_dingtalk_document", WRITE_ARGS)]
    assert message.tool_calls[0]["id"].startswith("call_")
    assert message.response_metadata["finish_reason"] == "tool_calls"


async def test_write_prompt_streams_the_tool_call_in_pieces(chat: ChatOpenAI,
                                                            client: openai.AsyncOpenAI) -> None:
    raw = await collect(await client.chat.completions.create(model=MODEL, messages=user(ZH_WRITE),
                                                            tools=OPENAI_TOOLS, stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in raw if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id and deltas[0].type == "function"
    assert deltas[0].function.name == "write_dingtalk_document"
    assert len(deltas) > 2, "arguments should be split across chunks"
    assert all(d.index == 0 and d.id is None for d in deltas[1:])
    assert json.loads("".join(d.function.arguments for d in deltas)) == WRITE_ARGS
    assert raw[-1].choices[0].finish_reason == "tool_calls"

    merged: AIMessageChunk | None = None
    async for chunk in chat.bind_tools(TOOLS).astream([HumanMessage(ZH_WRITE)]):
        merged = chunk if merged is None else merged + chunk
    assert [(c["name"], c["args"]) for c in merged.tool_calls] == [("write_dingtalk_document", WRITE_ARGS)]


@pytest.mark.parametrize("prompt", ["Who am I on Alibaba Cloud?", "我在阿里云上的身份是什么？", "who am i in aliyun",
                                    "阿里云上我是谁"])
async def test_identity_question_calls_the_caller_identity_tool(chat: ChatOpenAI, prompt: str) -> None:
    message = await chat.bind_tools(TOOLS).ainvoke([HumanMessage(prompt)])
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("get_alibaba_cloud_caller_identity", {})]


@pytest.mark.parametrize(("prompt", "arguments"), [
    ("Read oss://agent-docs/notes/welcome.txt", {"bucket": "agent-docs", "key": "notes/welcome.txt"}),
    ("读取 oss://agent-docs/notes/welcome.txt 的内容", {"bucket": "agent-docs", "key": "notes/welcome.txt"}),
    ("Please show the file oss://b-1/a/b.md in region cn-shanghai.",
     {"bucket": "b-1", "key": "a/b.md", "region": "cn-shanghai"}),
    ("读取文件 oss://agent-docs/x.txt，地域：cn-beijing", {"bucket": "agent-docs", "key": "x.txt", "region": "cn-beijing"}),
])
async def test_read_prompt_calls_the_oss_tool(chat: ChatOpenAI, prompt: str, arguments: dict) -> None:
    message = await chat.bind_tools(TOOLS).ainvoke([HumanMessage(prompt)])
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("read_oss_object", arguments)]


async def test_tool_not_offered_means_no_tool_call(client: openai.AsyncOpenAI) -> None:
    only_identity = [t for t in OPENAI_TOOLS if t["function"]["name"] != "write_dingtalk_document"]
    completion = await client.chat.completions.create(model=MODEL, messages=user(EN_WRITE),
                                                      tools=only_identity)
    assert completion.choices[0].message.tool_calls is None
    assert "write_dingtalk_document" in completion.choices[0].message.content
    chinese = await client.chat.completions.create(model=MODEL, messages=user("我在阿里云上的身份是什么？"))
    assert chinese.choices[0].message.tool_calls is None
    assert "抱歉" in chinese.choices[0].message.content


async def test_tool_choice_none_or_another_function_prevents_the_call(client: openai.AsyncOpenAI) -> None:
    other = {"type": "function", "function": {"name": "get_alibaba_cloud_caller_identity"}}
    for choice in ("none", other):
        completion = await client.chat.completions.create(model=MODEL, messages=user(EN_WRITE),
                                                          tools=OPENAI_TOOLS, tool_choice=choice)
        assert completion.choices[0].message.tool_calls is None
    forced = {"type": "function", "function": {"name": "write_dingtalk_document"}}
    completion = await client.chat.completions.create(model=MODEL, messages=user(EN_WRITE),
                                                      tools=OPENAI_TOOLS, tool_choice=forced)
    assert json.loads(completion.choices[0].message.tool_calls[0].function.arguments) == WRITE_ARGS


@pytest.mark.parametrize(("prompt", "expected_start"), [(ZH_WRITE, "已完成"), (EN_WRITE, "Done.")])
async def test_tool_result_gets_a_final_answer_quoting_it(chat: ChatOpenAI, prompt: str,
                                                          expected_start: str) -> None:
    bound = chat.bind_tools(TOOLS)
    history = [HumanMessage(prompt)]
    call = await bound.ainvoke(history)
    result = ToolMessage("Document doc123 now contains: Helloworld", tool_call_id=call.tool_calls[0]["id"])
    history += [call, result]
    answer = await bound.ainvoke(history)
    assert not answer.tool_calls
    assert answer.content.startswith(expected_start)
    assert "write_dingtalk_document" in answer.content
    assert "Document doc123 now contains: Helloworld" in answer.content
    streamed = "".join([chunk.content async for chunk in bound.astream(history)])
    assert streamed == answer.content


async def test_content_parts_with_extra_fields_are_understood(client: openai.AsyncOpenAI) -> None:
    parts = [{"type": "text", "text": EN_WRITE, "user_id": "someone-else"}]
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": parts}], tools=OPENAI_TOOLS)
    call = completion.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == WRITE_ARGS


async def test_chinese_plain_reply_is_in_chinese(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=user("你好"))
    assert completion.choices[0].message.content.startswith("我收到了你的消息")


async def test_max_tokens_truncates_with_finish_reason_length(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=user("Hello there"), max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3
    chunks = await collect(await client.chat.completions.create(model=MODEL, messages=user("Hello there"),
                                                               max_tokens=3, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == completion.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_wrong_api_key_is_openai_401(model: Running) -> None:
    async with openai.AsyncOpenAI(base_url=f"{model[1]}/v1", api_key="sk-wrong", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model=MODEL, messages=user("hi"))
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.body["type"] == "invalid_request_error"
    assert "sk-wrong" not in str(caught.value.body)


@pytest.mark.parametrize("headers", [{}, {"Authorization": API_KEY}, {"Authorization": f"Basic {API_KEY}"}])
async def test_missing_or_malformed_authorization_is_401(control: httpx.AsyncClient, headers: dict) -> None:
    response = await control.post("/v1/chat/completions", json={"model": MODEL, "messages": user("hi")},
                                  headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_models_are_listed(client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert MODEL in models


async def test_bad_requests_are_openai_400(control: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for body in ({"model": MODEL, "messages": []}, {"messages": user("hi")}, {"model": MODEL}):
        response = await control.post("/v1/chat/completions", json=body, headers=auth)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    odd_options = {"model": MODEL, "messages": user("hi"), "stream": True, "stream_options": "yes"}
    assert (await control.post("/v1/chat/completions", json=odd_options, headers=auth)).status_code == 200
    not_json = await control.post("/v1/chat/completions", content=b"{", headers=auth)
    assert not_json.status_code == 400 and set(not_json.json()["error"]) >= {"message", "type", "code"}


async def test_every_request_body_is_recorded_in_order(model: Running, control: httpx.AsyncClient,
                                                       client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model=MODEL, messages=user("first"))
    await collect(await client.chat.completions.create(model=MODEL, messages=user("second"), stream=True))
    recorded = (await control.get("/emulator/requests")).json()
    assert [r["messages"][0]["content"] for r in recorded] == ["first", "second"]
    assert recorded == model[0].requests
    assert all(API_KEY not in json.dumps(r) for r in recorded), "the key belongs in a header, not the body"
    await control.post("/emulator/requests/clear")
    assert (await control.get("/emulator/requests")).json() == []


async def test_server_error_fault_is_an_openai_error(control: httpx.AsyncClient,
                                                     client: openai.AsyncOpenAI) -> None:
    await control.post("/emulator/faults", json={"fail_next": 1, "fail_status": 500})
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.body["type"] == "server_error"
    completion = await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert completion.choices[0].finish_reason == "stop"


async def test_throttle_fault_is_a_rate_limit_error(control: httpx.AsyncClient, chat: ChatOpenAI) -> None:
    await control.post("/emulator/faults", json={"fail_next": 1, "fail_kind": "throttle"})
    with pytest.raises(openai.RateLimitError) as caught:
        await chat.ainvoke("hi")
    assert caught.value.code == "rate_limit_exceeded"


async def test_latency_fault_delays_the_first_token_past_a_client_timeout(control: httpx.AsyncClient,
                                                                          model: Running) -> None:
    await control.post("/emulator/faults", json={"latency_ms": 3000, "match": "/v1/chat/completions"})
    async with openai.AsyncOpenAI(base_url=f"{model[1]}/v1", api_key=API_KEY, max_retries=0,
                                  timeout=0.2) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.chat.completions.create(model=MODEL, messages=user("hi"), stream=True)
        assert MODEL in [m.id async for m in sdk.models.list()], "the fault matches only chat completions"


async def test_timeout_fault_answers_504(control: httpx.AsyncClient, client: openai.AsyncOpenAI) -> None:
    await control.post("/emulator/faults", json={"fail_next": 1, "fail_kind": "timeout", "timeout_s": 0.05})
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.status_code == 504


async def test_token_delay_knob_is_set_streamed_with_and_reset(control: httpx.AsyncClient,
                                                               client: openai.AsyncOpenAI) -> None:
    knob = await control.post("/emulator/stream", json={"token_delay_ms": 5})
    assert knob.json() == {"token_delay_ms": 5, "error_after_chunks": None}
    stream = await client.chat.completions.create(model=MODEL, messages=user("hi"), stream=True)
    chunks = await collect(stream)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (await control.post("/emulator/stream", json={"delay": 1})).status_code == 400
    await control.post("/emulator/reset")
    assert (await control.get("/emulator/stream")).json() == {"token_delay_ms": 0, "error_after_chunks": None}


async def test_error_after_chunks_ends_the_stream_with_an_openai_error_event(control: httpx.AsyncClient,
                                                                            client: openai.AsyncOpenAI) -> None:
    knob = await control.post("/emulator/stream", json={"error_after_chunks": 2})
    assert knob.json() == {"token_delay_ms": 0, "error_after_chunks": 2}
    stream = await client.chat.completions.create(model=MODEL, messages=user("hello there"), stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 2 and received[1].choices[0].delta.content == "I "
    assert caught.value.body["code"] == "server_error"
    assert (await control.post("/emulator/stream", json={"error_after_chunks": "x"})).status_code == 400
    await control.post("/emulator/reset")
    assert (await control.get("/emulator/stream")).json()["error_after_chunks"] is None
