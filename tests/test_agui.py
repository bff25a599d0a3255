"""`POST /ag-ui/agent` on the wire: every event validates against the AG-UI protocol's own models
(ag-ui-protocol), errors before the stream are the chat route's statuses and OpenAI-shaped bodies, the thread is
the session, and a conversation the client kept is read back the way the model needs it. The official client's
journeys (chat, consent, errors) are in test_js_clients.py."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from ag_ui.core import Event, EventType
from pydantic import TypeAdapter

from agent.runner import Finished, TextDelta, ToolArguments, ToolFinished, ToolStarted, Usage
from emulators._server import listening_socket
from identity.context import AuthorizationRequired
from server.agui_stream import AgUiStream
from server.events import render
from tests.support.app_server import serve_app
from tests.support.logs import request_log_lines

AGUI = "/ag-ui/agent"
EVENTS = TypeAdapter(Event)


@pytest.fixture(scope="module")
def server(cloud):
    env = cloud.env | {"MODEL_MAX_RETRIES": "0", "MAX_REQUEST_BYTES": "4096"}
    with serve_app(env) as base_url:
        yield base_url


@pytest.fixture
def auth(fresh_cloud):
    return {"Authorization": f"Bearer {fresh_cloud.issue_user_jwt('agui-alice')}"}


def run_input(*messages: dict, **extra) -> dict:
    return {"threadId": "thread-1", "runId": "run-1", "messages": list(messages), **extra}


def user(content, id_: str = "u1") -> dict:
    return {"id": id_, "role": "user", "content": content}


def run(server: str, headers: dict, body: dict) -> tuple[httpx.Response, list]:
    """The response and its events, each parsed by the protocol's own models (keep-alive comments skipped)."""
    response = httpx.post(f"{server}{AGUI}", json=body, headers=headers, timeout=30)
    frames = [f for f in response.text.split("\n\n") if f.startswith("data: ")]
    return response, [EVENTS.validate_json(f.removeprefix("data: ")) for f in frames]


def test_a_run_is_started_streamed_and_finished_with_its_ids_and_usage(server, auth):
    response, events = run(server, auth, run_input(user("hello there")))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    started, finished = events[0], events[-1]
    assert started.type == EventType.RUN_STARTED and (started.thread_id, started.run_id) == ("thread-1", "run-1")
    assert started.protocol_version == "1.0"
    assert finished.type == EventType.RUN_FINISHED and (finished.thread_id, finished.run_id) == ("thread-1", "run-1")
    assert finished.usage[0].total_tokens > 0
    text = [e for e in events[1:-1]]
    assert text[0].type == EventType.TEXT_MESSAGE_START and text[-1].type == EventType.TEXT_MESSAGE_END
    assert {e.message_id for e in text} == {text[0].message_id}
    assert 'I understood your message: "hello there"' in "".join(e.delta for e in text[1:-1])


def test_images_by_url_are_passed_to_the_model(server, auth, fresh_cloud):
    image = {"type": "image", "source": {"type": "url", "value": "https://example.com/cat.png"}}
    response, events = run(server, auth, run_input(user([{"type": "text", "text": "what is it"}, image])))
    assert response.status_code == 200 and events[-1].type == EventType.RUN_FINISHED
    sent = httpx.get(f"{fresh_cloud.url('model')}/emulator/requests").json()[-1]["messages"][-1]
    assert sent["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    (b'{"threadId": ', 400, "invalid_json", None),
    (run_input(), 400, "invalid_value", "messages"),
    ({"runId": "r", "messages": [user("hi")]}, 400, "invalid_value", "threadId"),
    (run_input({"id": "1", "role": "robot", "content": "hi"}), 400, "invalid_value", "messages.0"),
    (run_input(user([{"type": "text"}])), 400, "invalid_value", "messages.0.content.0.text"),
    (run_input(user([{"type": "audio", "source": {"type": "url", "value": "https://example.com/a.mp3"}}])), 400,
     "invalid_value", "messages.0.content.0"),
    (run_input(user("hi"), tools=[{"name": "lookup", "description": "Look it up."}]), 400, "invalid_value",
     "tools"),
    (run_input(user("hi"), resume=[{"interruptId": "i1", "status": "resolved"}]), 400, "invalid_value", "resume"),
    (run_input(user("x" * 5000)), 413, "request_too_large", None),
])
def test_errors_before_the_stream_are_the_chat_route_s(server, auth, body, status, code, param):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{server}{AGUI}", content=content, headers=auth | {"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


def test_no_bearer_token_is_a_401(server):
    response = httpx.post(f"{server}{AGUI}", json=run_input(user("hi")))
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


def test_a_model_failing_before_any_output_is_an_http_error(server, auth, fresh_cloud):
    httpx.post(f"{fresh_cloud.url('model')}/emulator/faults", json={"fail_next": 1, "fail_status": 500})
    response = httpx.post(f"{server}{AGUI}", json=run_input(user("hi")), headers=auth, timeout=30)
    assert response.status_code == 502 and response.json()["error"]["code"] == "model_error"


@pytest.mark.parametrize(("headers", "session"), [({}, "thread-1"), ({"X-app-custom-session-id": "s-7"}, "s-7")])
def test_the_thread_is_the_session_unless_the_request_names_one(server, auth, caplog, headers, session):
    caplog.set_level(logging.INFO, logger="app.request")
    response, _ = run(server, auth | headers, run_input(user("hi")))
    assert response.status_code == 200
    line = request_log_lines(caplog)[-1]
    assert (line["path"], line["session_id"], line["sub"], line["stream"]) == (AGUI, session, "agui-alice", True)


def test_the_conversation_reaches_the_model_without_calls_left_unanswered(server, auth, fresh_cloud):
    """A run cut short (a closed tab while the user was asked for consent) leaves the client's conversation a
    tool call without a result: the model's API refuses such a conversation, so the call is left out, as is a
    result without its call; the application's context becomes a system message."""
    call = {"id": "call-done", "type": "function",
            "function": {"name": "get_alibaba_cloud_caller_identity", "arguments": "{}"}}
    cut = {"id": "call-cut", "type": "function",
           "function": {"name": "write_dingtalk_document", "arguments": '{"document_id": "d", "content": "x"}'}}
    messages = [user("Who am I on Alibaba Cloud?"),
                {"id": "a1", "role": "assistant", "toolCalls": [call]},
                {"id": "t1", "role": "tool", "toolCallId": "call-done", "content": "account 1"},
                {"id": "a2", "role": "assistant", "content": "You are account 1."},
                user("write x to d", "u2"),
                {"id": "a3", "role": "assistant", "toolCalls": [cut]},
                {"id": "t9", "role": "tool", "toolCallId": "call-elsewhere", "content": "stray"},
                {"id": "r1", "role": "reasoning", "content": "thinking"},
                user("hello there", "u3")]
    response, events = run(server, auth, run_input(*messages, context=[{"description": "page", "value": "home"}]))
    assert response.status_code == 200 and events[-1].type == EventType.RUN_FINISHED
    sent = httpx.get(f"{fresh_cloud.url('model')}/emulator/requests").json()[-1]["messages"]
    conversation = [(m["role"], m.get("content"), [c["id"] for c in m.get("tool_calls") or ()]) for m in sent
                    if "Context from the application" not in str(m.get("content"))][-6:]
    assert conversation == [("user", "Who am I on Alibaba Cloud?", []), ("assistant", None, ["call-done"]),
                            ("tool", "account 1", []), ("assistant", "You are account 1.", []),
                            ("user", "write x to d", []), ("user", "hello there", [])]
    assert any(m["role"] == "system" and "- page: home" in m["content"] for m in sent)


def test_text_then_parallel_tool_calls_make_one_assistant_message_and_each_turn_its_own():
    """What the official client builds its conversation from: the calls after the model's text name that text
    message as their parent (parallel calls all name it), every call ends before anything else is said, and
    the model's next turn is a new message."""
    stream = AgUiStream("thread-1", "run-1", "qwen-plus")
    items = [TextDelta("Let me check. "), ToolStarted("a", "c1"), ToolArguments("c1", '{"x":'),
             ToolStarted("b", "c2"), ToolArguments("c2", "{}"), ToolArguments("c1", "1}"),
             AuthorizationRequired("https://consent.example/1", "Write to DingTalk document", "dingtalk"),
             ToolFinished("a", call_id="c1", text="a done"), ToolFinished("b", call_id="c2", text="b done"),
             TextDelta("Both done."), Finished("stop", Usage(10, 5))]
    raw = stream.opening() + b"".join(stream.item(item, render(item)) for item in items) + stream.closing()
    events = [EVENTS.validate_json(f.removeprefix(b"data: ")) for f in raw.strip().split(b"\n\n")]
    kinds = [e.type.value for e in events]
    first_text = events[1].message_id
    starts = [e for e in events if e.type == EventType.TOOL_CALL_START]
    assert [(s.tool_call_id, s.parent_message_id) for s in starts] == [("c1", first_text), ("c2", first_text)]
    assert kinds.index("TEXT_MESSAGE_END") < kinds.index("TOOL_CALL_START")
    assert [e.tool_call_id for e in events if e.type == EventType.TOOL_CALL_ARGS] == ["c1", "c2", "c1"]
    assert kinds.index("TOOL_CALL_END") > max(i for i, k in enumerate(kinds) if k == "TOOL_CALL_ARGS")
    custom = next(e for e in events if e.type == EventType.CUSTOM)
    assert (custom.name, custom.value) == ("authorization_required", {
        "type": "authorization_required", "url": "https://consent.example/1",
        "purpose": "Write to DingTalk document", "provider": "dingtalk"})
    assert [e.content for e in events if e.type == EventType.TOOL_CALL_RESULT] == ["a done", "b done"]
    text_messages = [e.message_id for e in events if e.type == EventType.TEXT_MESSAGE_START]
    assert len(set(text_messages)) == 3  # the model's text, the consent sentence, the answer after the tools
    assert events[-1].type == EventType.RUN_FINISHED and events[-1].usage[0].total_tokens == 15


async def test_a_run_waiting_for_consent_ends_with_a_run_error_when_the_process_stops(cloud):
    """SIGTERM's last word (server/shutdown.py) in AG-UI's terms: the waiting run ends with `RUN_ERROR`
    `service_restarting`, not a cut connection."""
    sock = listening_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cloud.register_return_url(f"{public}/callback")
    state: dict = {}
    body = run_input(user("帮我写入“bye”到钉钉文档，文档ID：docAgUiStop"))
    headers = {"Authorization": f"Bearer {cloud.issue_user_jwt('agui-stopping')}"}
    with serve_app(cloud.env | {"APP_REDIRECT_URI": public, "SHUTDOWN_GRACE_SECONDS": "3"}, sock=sock,
                   app_state=state) as server:
        events = []
        async with httpx.AsyncClient(timeout=30) as http, http.stream("POST", f"{server}{AGUI}", json=body,
                                                                       headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(EVENTS.validate_json(line.removeprefix("data: ")))
                    if events[-1].type == EventType.CUSTOM:
                        state["loop"].call_soon_threadsafe(state["stop"].set)
    kinds = [event.type for event in events]
    assert kinds[-4:] == [EventType.TEXT_MESSAGE_START, EventType.TEXT_MESSAGE_CONTENT,  # the consent sentence
                          EventType.TEXT_MESSAGE_END, EventType.RUN_ERROR] and EventType.RUN_FINISHED not in kinds
    assert events[-1].code == "service_restarting"
