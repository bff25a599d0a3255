"""`JsonChatCompletions` under `ChatOpenAI`, against the model emulator and a raw SSE server: the same requests
and answers as the SDK's own path, the SDK's retries and errors, SSE parsed as the SDK parses it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import START, StateGraph

from agent.completions import JsonChatCompletions
from agent.graph import RunOptions, build_agent
from agent.model import ModelClients, ModelEndpoint, build_chat_model, model_clients
from agent.settings import AgentSettings
from agent.tokens import AGENT_MODEL_NODE, model_text_to
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


def settings(url: str, retries: int = 0, timeout_s: float = 5) -> AgentSettings:
    return AgentSettings.from_env({"MODEL_BASE_URL": f"{url}/v1", "MODEL_API_KEY": API_KEY,
                                   "MODEL_MAX_RETRIES": str(retries), "MODEL_TIMEOUT_SECONDS": str(timeout_s)})


@asynccontextmanager
async def product_model(url: str, retries: int = 0, timeout_s: float = 5,
                        api_key: str = API_KEY) -> AsyncIterator[ChatOpenAI]:
    """The product's chat model, as `agent.model` builds it, with its clients closed afterwards."""
    s = settings(url, retries, timeout_s)
    clients: ModelClients = model_clients(s, ModelEndpoint(s.base_url, api_key))
    try:
        yield build_chat_model(s, clients)
    finally:
        await clients.aclose()


@pytest.fixture
async def ours(model, control) -> AsyncIterator[ChatOpenAI]:
    async with product_model(model[1]) as chat:
        assert isinstance(chat.async_client, JsonChatCompletions)
        yield chat


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
    async with product_model(url) as chat:
        # Qwen's switches (e.g. enable_thinking) travel in extra_body.
        await merged(chat.model_copy(update={"extra_body": {"enable_thinking": False}}), [HumanMessage("hi")])
    await merged(sdk_typed(url, extra_body={"enable_thinking": False}), [HumanMessage("hi")])
    ours_body, sdk_body = emulator.requests[-2:]
    assert ours_body["enable_thinking"] is False and ours_body == sdk_body


async def test_http_errors_are_the_sdks_errors(model, control, ours) -> None:
    await control.post("/emulator/faults", json={"fail_next": 1, "fail_status": 500})
    with pytest.raises(openai.InternalServerError) as server_error:
        await merged(ours, [HumanMessage("hi")])
    assert server_error.value.status_code == 500 and server_error.value.body["message"]
    async with product_model(model[1], api_key="sk-wrong") as wrong_key:
        with pytest.raises(openai.AuthenticationError) as caught:
            await merged(wrong_key, [HumanMessage("hi")])
    assert "sk-wrong" not in str(caught.value)


@pytest.mark.parametrize("fault", [{"fail_status": 503}, {"fail_kind": "throttle"}])
async def test_the_sdks_retries_still_apply(model, control, fault) -> None:
    await control.post("/emulator/faults", json={"fail_next": 1, **fault})
    async with product_model(model[1], retries=1) as chat:
        answer = await merged(chat, [HumanMessage("hello there")])
    assert answer.content.startswith('I understood your message: "hello there"')
    assert (await control.get("/emulator/calls")).json()["POST /v1/chat/completions"] == 2


async def test_a_model_that_does_not_answer_in_time_is_a_timeout(model, control) -> None:
    await control.post("/emulator/faults", json={"fail_next": 1, "fail_kind": "timeout", "timeout_s": 2})
    async with product_model(model[1], timeout_s=0.3) as chat:
        with pytest.raises(openai.APITimeoutError):
            await merged(chat, [HumanMessage("hi")])


async def test_an_unreachable_model_is_a_connection_error(control) -> None:
    import socket

    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
        async with product_model(url) as chat:
            with pytest.raises(openai.APIConnectionError) as caught:
                await merged(chat, [HumanMessage("hi")])
    assert not isinstance(caught.value, openai.APITimeoutError)


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


# --- the SSE wire, byte by byte, from a server that sends exactly what a test says ------------------------

def chunk_event(text: str) -> bytes:
    return b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                                   "choices": [{"index": 0, "delta": {"content": text},
                                                "finish_reason": None}]}).encode()


class RawSse:
    """Serves each POST the next script: a list of (pause seconds, bytes) pieces. Records client ports."""

    def __init__(self) -> None:
        self.scripts: list[list[tuple[float, bytes]]] = []
        self.client_ports: list[int] = []

    def app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import StreamingResponse
        from starlette.routing import Route

        async def completions(request: Request) -> StreamingResponse:
            await request.body()
            self.client_ports.append(request.client.port)
            script = self.scripts.pop(0)

            async def pieces():
                for pause, piece in script:
                    await asyncio.sleep(pause)
                    yield piece

            return StreamingResponse(pieces(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture(scope="module")
def raw_sse() -> Iterator[tuple[RawSse, str]]:
    server = RawSse()
    with serving("raw-sse", server.app()) as url:
        yield server, url


async def test_events_split_anywhere_with_crlf_comments_and_no_final_blank_line(raw_sse) -> None:
    server, url = raw_sse
    wire = (b": keep-alive\r\n\r\n" + chunk_event("Hello") + b"\r\n\r\nevent: message\r\n" + chunk_event(", ")
            + b"\r\n\r\n" + chunk_event("world") + b"\n\n" + chunk_event("!"))  # the last one unterminated
    server.scripts.append([(0, wire[i:i + 7]) for i in range(0, len(wire), 7)])  # 7-byte pieces split CRLFs
    async with product_model(url) as chat:
        answer = await merged(chat, [HumanMessage("hi")])
    assert answer.content == "Hello, world!"


async def test_keep_alive_comments_do_not_hide_a_silent_model(raw_sse) -> None:
    server, url = raw_sse
    server.scripts.append([(0, chunk_event("Hel") + b"\n\n")] + [(0.1, b": keep-alive\n\n")] * 10)
    received = []
    async with product_model(url, timeout_s=0.35) as chat:
        with pytest.raises(openai.APITimeoutError):
            async for chunk in chat.astream([HumanMessage("hi")]):
                received.append(chunk.content)
    assert "".join(received) == "Hel"


async def test_the_connection_is_reused_after_done(raw_sse) -> None:
    server, url = raw_sse
    for _ in range(3):
        server.scripts.append([(0, chunk_event("ok") + b"\n\n"), (0, b"data: [DONE]\n\n")])
    async with product_model(url) as chat:
        for _ in range(3):
            assert (await merged(chat, [HumanMessage("hi")])).content == "ok"
    assert len(set(server.client_ports[-3:])) == 1


def test_the_model_connection_takes_its_proxy_from_the_environment_once(monkeypatch) -> None:
    from agent.model import environment_proxy

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://dashscope.example/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert environment_proxy("https://dashscope.example/v1") == "http://proxy.example:3128"
    assert environment_proxy("http://dashscope.example/v1") is None  # no HTTP_PROXY
    monkeypatch.setenv("NO_PROXY", "dashscope.example")
    assert environment_proxy("https://dashscope.example/v1") is None


# --- the model's text, handed to the run's sink as it comes off the wire -----------------------------------

class _NodeState(TypedDict, total=False):
    done: bool


async def in_graph_node(name: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Await `call` inside a LangGraph node called `name`, as `create_agent` runs its model calls (in "model")
    and its tools (in "tools")."""
    results = []

    async def node(_: _NodeState) -> _NodeState:
        results.append(await call())
        return {"done": True}

    graph = StateGraph(_NodeState).add_node(name, node).add_edge(START, name).compile()
    await graph.ainvoke({"done": False})
    return results[0]


def role_event() -> bytes:
    return b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                "finish_reason": None}]}).encode()


async def test_a_reads_text_reaches_the_sink_before_langchain_sees_its_first_event(raw_sse) -> None:
    server, url = raw_sse
    first_read = role_event() + b"\n\n" + chunk_event("Hel") + b"\n\n" + chunk_event("lo") + b"\n\n"
    server.scripts.append([(0, first_read), (0.05, chunk_event(" you") + b"\n\ndata: [DONE]\n\n")])
    delivered: list[str] = []
    seen_by_langchain: list[tuple[str, list[str]]] = []

    async def call() -> None:
        async for chunk in chat.astream([HumanMessage("hi")]):
            seen_by_langchain.append((chunk.content, list(delivered)))

    async with product_model(url) as chat:
        with model_text_to(delivered.append):
            await in_graph_node(AGENT_MODEL_NODE, call)
    assert delivered == ["Hel", "lo", " you"]
    assert seen_by_langchain[0] == ("", ["Hel", "lo"])  # the role chunk: its read's text had already gone
    assert "".join(content for content, _ in seen_by_langchain) == "Hello you"


async def test_text_before_an_error_event_is_delivered_and_none_after_it(raw_sse) -> None:
    server, url = raw_sse
    error = b'data: {"error": {"message": "overloaded", "code": "server_error"}}'
    wire = chunk_event("Hel") + b"\n\n" + error + b"\n\n" + chunk_event("never") + b"\n\n"
    server.scripts.append([(0, wire)])
    delivered: list[str] = []
    received: list[str] = []

    async def call() -> None:
        async for chunk in chat.astream([HumanMessage("hi")]):
            received.append(chunk.content)

    async with product_model(url) as chat:
        with model_text_to(delivered.append), pytest.raises(openai.APIError):
            await in_graph_node(AGENT_MODEL_NODE, call)
    assert delivered == received == ["Hel"]


async def test_concurrent_runs_each_get_their_own_models_text(model, control, ours) -> None:
    async def run(prompt: str) -> tuple[str, str]:
        delivered: list[str] = []
        with model_text_to(delivered.append):
            answer = await in_graph_node(AGENT_MODEL_NODE, lambda: merged(ours, [HumanMessage(prompt)]))
        return "".join(delivered), answer.content

    results = await asyncio.gather(*(run(f"note number {n}") for n in range(4)))
    for n, (delivered, answer) in enumerate(results):
        assert f"note number {n}" in answer
        assert delivered == answer


async def test_only_the_agents_own_model_calls_reach_the_sink(model, control, ours) -> None:
    delivered: list[str] = []
    with model_text_to(delivered.append):
        outside = await merged(ours, [HumanMessage("outside any graph")])
        in_tool = await in_graph_node("tools", lambda: merged(ours, [HumanMessage("inside a tool")]))
        sub_agent = await in_graph_node("tools", lambda: in_graph_node(
            AGENT_MODEL_NODE, lambda: merged(ours, [HumanMessage("a sub-agent's model")])))
    assert "outside any graph" in outside.content and "inside a tool" in in_tool.content
    assert "a sub-agent's model" in sub_agent.content
    assert delivered == []


async def test_a_tools_own_model_call_is_not_streamed_to_the_user(model, control) -> None:
    """Through the real agent: the tool's model call answers the tool, the user sees only the agent's text."""
    async with product_model(model[1]) as chat:

        @tool("write_dingtalk_document")
        async def summarising_writer(document_id: str, content: str) -> str:
            """Overwrite a DingTalk document with markdown content."""
            summary = await chat.ainvoke([HumanMessage("tool-internal words")])
            assert "tool-internal words" in summary.content
            return "written"

        agent = build_agent(chat, [summarising_writer], RunOptions())
        delivered: list[str] = []
        request = [HumanMessage('Write "Helloworld" to DingTalk document doc123')]
        with model_text_to(delivered.append):
            async for _ in agent.graph.astream({"messages": request}, stream_mode="updates"):
                pass
    streamed = "".join(delivered)
    assert streamed and "tool-internal words" not in streamed
