"""The SSE wire format byte by byte, keep-alives, errors in the OpenAI shape, and client disconnects."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import httpx
import pytest

from settings import ConfigError
from tests.support.app_server import serve_app
from tests.support.logs import request_log_lines

CHAT = "/openai/v1/chat/completions"


@pytest.fixture(scope="module")
def app_state():
    return {}


@pytest.fixture(scope="module")
def server(cloud, app_state):
    # Keep-alives start after 0.15 s: well before the slow-model tests' 300-400 ms, yet late enough that an
    # immediate model error still arrives first (and becomes a real HTTP status) on a busy machine.
    env = cloud.env | {"STREAM_KEEPALIVE_SECONDS": "0.15", "MODEL_MAX_RETRIES": "0",
                       "MODEL_TIMEOUT_SECONDS": "1", "MAX_REQUEST_BYTES": "4096"}
    with serve_app(env, app_state=app_state) as base_url:
        yield base_url


@pytest.fixture
def auth(fresh_cloud):
    return {"Authorization": f"Bearer {fresh_cloud.issue_user_jwt('alice')}"}


def model_faults(cloud, **faults):
    httpx.post(f"{cloud.url('model')}/emulator/faults", json=faults).raise_for_status()


def events(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n")
    return raw[:-2].split(b"\n\n")


def test_sse_bytes(server, auth):
    body = {"stream": True, "messages": [{"role": "user", "content": "hello there"}]}
    with httpx.stream("POST", f"{server}{CHAT}", json=body, headers=auth, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = response.read()
    frames = [f for f in events(raw) if not f.startswith(b":")]
    assert frames[-1] == b"data: [DONE]"
    chunks = [json.loads(f.removeprefix(b"data: ")) for f in frames[:-1]]
    assert all(f.startswith(b"data: {") for f in frames[:-1])
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "qwen-plus" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    words = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(words) > 5, "model text is streamed piece by piece, not in one block"
    assert "".join(words).startswith('I understood your message: "hello there"')
    assert "usage" not in chunks[-1]  # only with stream_options.include_usage


def test_keepalive_comments_while_the_model_is_slow(server, auth, fresh_cloud):
    model_faults(fresh_cloud, latency_ms=400)
    body = {"stream": True, "messages": [{"role": "user", "content": "hello there"}]}
    raw = httpx.post(f"{server}{CHAT}", json=body, headers=auth, timeout=30).content
    frames = events(raw)
    assert b": keep-alive" in frames
    assert frames.index(b": keep-alive") < next(i for i, f in enumerate(frames) if b'"content":"I ' in f)
    assert frames[-1] == b"data: [DONE]"


def test_model_error_before_output_is_a_502(server, auth, fresh_cloud):
    model_faults(fresh_cloud, fail_next=1, fail_status=500)
    response = httpx.post(f"{server}{CHAT}", json={"messages": [{"role": "user", "content": "hi"}]},
                          headers=auth, timeout=30)
    assert response.status_code == 502
    assert response.json()["error"] == {"message": "The model returned an error (HTTP 500).",
                                        "type": "upstream_error", "code": "model_error", "param": None}


@pytest.mark.parametrize("status", [500, 503])
def test_streamed_model_error_before_output_is_a_502(server, auth, fresh_cloud, status):
    model_faults(fresh_cloud, fail_next=1, fail_status=status)
    response = httpx.post(f"{server}{CHAT}", headers=auth, timeout=30,
                          json={"stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "model_error"
    assert httpx.get(f"{server}/health").status_code == 200


def test_model_timeout_is_a_504(server, auth, fresh_cloud):
    model_faults(fresh_cloud, fail_next=1, fail_kind="timeout", timeout_s=3)
    response = httpx.post(f"{server}{CHAT}", json={"messages": [{"role": "user", "content": "hi"}]},
                          headers=auth, timeout=30)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "model_timeout"


def test_error_after_the_stream_started_is_a_last_event_in_openai_s_error_shape(server, auth, fresh_cloud):
    # The delay makes the server commit to the stream (keep-alives) before the model fails.
    model_faults(fresh_cloud, latency_ms=300, fail_next=1, fail_status=503)
    body = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{server}{CHAT}", json=body, headers=auth, timeout=30) as response:
        assert response.status_code == 200
        frames = [f for f in events(response.read()) if not f.startswith(b":")]
    assert b"data: [DONE]" not in frames  # the stream ends after its error event, as OpenAI's does
    last = json.loads(frames[-1].removeprefix(b"data: "))
    assert "choices" not in last  # a chunk with choices would read as an answer to some clients
    assert last["error"]["code"] == "model_error" and last["error"]["type"] == "upstream_error"
    assert last["agent_event"] == {"type": "error", "code": "model_error"}
    assert b'"finish_reason":"stop"' not in b"".join(frames)


def test_model_error_event_after_some_text_ends_the_stream_with_an_error_event(server, auth, fresh_cloud):
    httpx.post(f"{fresh_cloud.url('model')}/emulator/stream", json={"error_after_chunks": 3}).raise_for_status()
    body = {"stream": True, "messages": [{"role": "user", "content": "hello there"}]}
    with httpx.stream("POST", f"{server}{CHAT}", json=body, headers=auth, timeout=30) as response:
        assert response.status_code == 200
        frames = [f for f in events(response.read()) if not f.startswith(b":")]
    chunks = [json.loads(f.removeprefix(b"data: ")) for f in frames]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "I understood "
    assert set(chunks[-1]) == {"error", "agent_event"} and chunks[-1]["error"]["code"] == "model_error"
    assert httpx.post(f"{server}{CHAT}", json=body | {"stream": False}, headers=auth, timeout=30).status_code == 502


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer"},
                                     {"Authorization": "Bearer not-a-jwt"}])
def test_missing_or_malformed_authorization_is_401(server, headers):
    response = httpx.post(f"{server}{CHAT}", json={"messages": [{"role": "user", "content": "hi"}]},
                          headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_invalid_json_is_400(server, auth):
    response = httpx.post(f"{server}{CHAT}", content=b'{"messages": [', headers=auth)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(("body", "param"), [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 7}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes please"}, "stream"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),  # no lax "yes" -> True
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),  # one answer: the agent acts once
    ([1, 2], None),
])
def test_schema_errors_name_the_field(server, auth, body, param):
    response = httpx.post(f"{server}{CHAT}", json=body, headers=auth)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    if param:
        assert f"'{param}'" in error["message"]


def test_body_too_large_is_413_with_content_length(server, auth):
    body = {"messages": [{"role": "user", "content": "x" * 5000}]}
    response = httpx.post(f"{server}{CHAT}", json=body, headers=auth)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_body_too_large_is_413_when_chunked(server, auth):
    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    response = httpx.post(f"{server}{CHAT}", content=chunks(), headers=auth)
    assert response.status_code == 413


def test_unknown_route_and_method_use_the_openai_shape(server):
    missing = httpx.get(f"{server}/openai/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{server}{CHAT}")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"


def test_health(server):
    response = httpx.get(f"{server}/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert httpx.head(f"{server}/health").status_code == 200  # load balancers probe with HEAD too


def test_openapi_describes_the_chat_body(server):
    document = httpx.get(f"{server}/openapi.json").json()
    operation = document["paths"][CHAT]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    here = "#/paths/~1openai~1v1~1chat~1completions/post/requestBody/content/application~1json/schema"
    assert body["title"] == "ChatCompletionRequest" and body["required"] == ["messages"]
    assert body["properties"]["messages"]["items"] == {"$ref": f"{here}/$defs/ChatMessage"}
    assert "ChatMessage" in body["$defs"]  # the reference resolves inside the same document
    assert {"400", "401", "413"} <= set(operation["responses"])


def agent_runs(app_state) -> int:
    async def count() -> int:
        return sum(1 for t in asyncio.all_tasks() if t.get_name() == "agent-run" and not t.done())

    return asyncio.run_coroutine_threadsafe(count(), app_state["loop"]).result(timeout=5)


def test_client_disconnect_cancels_the_run(server, auth, fresh_cloud, app_state):
    httpx.post(f"{fresh_cloud.url('model')}/emulator/stream", json={"token_delay_ms": 200})
    body = {"stream": True, "messages": [{"role": "user", "content": "hello there, a long answer please"}]}
    with httpx.stream("POST", f"{server}{CHAT}", json=body, headers=auth, timeout=30) as response:
        lines = response.iter_lines()  # keep a reference: a dropped iterator closes the response early
        next(line for line in lines if '"content":"I ' in line)
        assert agent_runs(app_state) == 1
    for _ in range(200):  # the server notices the closed socket on its next write or receive
        if agent_runs(app_state) == 0:
            break
        time.sleep(0.02)
    assert agent_runs(app_state) == 0


def test_client_leaving_before_the_response_starts_cancels_the_run(server, auth, fresh_cloud, app_state,
                                                                   caplog):
    caplog.set_level(logging.INFO, logger="app.request")
    model_faults(fresh_cloud, latency_ms=900)  # under MODEL_TIMEOUT_SECONDS, over the keep-alive interval
    body = json.dumps({"stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    url = httpx.URL(server)
    with socket.create_connection((url.host, url.port)) as raw:  # gone before anything is sent back
        raw.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                    b"Authorization: " + auth["Authorization"].encode() + b"\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.05)
        assert agent_runs(app_state) == 1
    started = time.monotonic()
    while agent_runs(app_state) and time.monotonic() - started < 0.5:
        time.sleep(0.01)
    assert agent_runs(app_state) == 0, "the run should stop with the client, not when the model answers"
    lines = request_log_lines(caplog)
    assert lines[-1]["error"] == "client_disconnected"


@pytest.mark.parametrize("fails", [False, True])
def test_streamed_requests_are_logged_with_their_tokens_or_error(server, auth, fresh_cloud, caplog, fails):
    caplog.set_level(logging.INFO, logger="app.request")
    if fails:
        model_faults(fresh_cloud, fail_next=1, fail_status=500)
    body = {"stream": True, "messages": [{"role": "user", "content": "hello there"}]}
    response = httpx.post(f"{server}{CHAT}", json=body, headers=auth, timeout=30)
    assert response.status_code == (502 if fails else 200)
    lines = request_log_lines(caplog)
    line = lines[-1]
    assert line["status"] == response.status_code and line["request_id"] == response.headers["x-request-id"]
    if fails:
        assert line["error"] == "model_error" and "tokens" not in line
    else:
        assert line["tokens"]["total_tokens"] > 0 and "error" not in line


def test_one_json_log_line_per_request_without_secrets(server, fresh_cloud, caplog):
    token = fresh_cloud.issue_user_jwt("alice")
    caplog.set_level(logging.INFO, logger="app.request")
    body = {"messages": [{"role": "user", "content": "hello there"}]}
    response = httpx.post(f"{server}{CHAT}", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}", "X-AgentRun-Session-ID": "sess-42"})
    assert response.status_code == 200
    lines = request_log_lines(caplog)
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == response.headers["x-request-id"]
    assert (line["session_id"], line["sub"], line["status"]) == ("sess-42", "alice", 200)
    assert line["tokens"]["total_tokens"] > 0 and line["duration_ms"] >= 0
    assert token not in caplog.text and fresh_cloud.env["MODEL_API_KEY"] not in caplog.text


@pytest.mark.parametrize(("where", "name"), [("query", "sessionId"), ("header", "X-AgentRun-Session-ID"),
                                             ("header", "X-app-custom-session-id")])
def test_the_session_id_comes_from_the_query_or_either_header(server, fresh_cloud, caplog, where, name):
    """AgentRun's clients send `?sessionId=` or X-AgentRun-Session-ID; the Agent Identity sample's clients send
    X-app-custom-session-id."""
    caplog.set_level(logging.INFO, logger="app.request")
    headers = {"Authorization": f"Bearer {fresh_cloud.issue_user_jwt('sam')}"}
    params = {name: "chat-9"} if where == "query" else {}
    headers.update({name: "chat-9"} if where == "header" else {})
    response = httpx.post(f"{server}{CHAT}", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30,
                          headers=headers, params=params)
    assert response.status_code == 200
    lines = request_log_lines(caplog)
    assert [line["session_id"] for line in lines] == ["chat-9"]


def test_missing_configuration_is_named_at_start():
    from wiring.agent_app import create_app

    with pytest.raises(ConfigError) as raised:
        create_app({"PORT": "not-a-port"})
    message = str(raised.value)
    for name in ("MODEL_API_KEY", "IDENTITY_STATE_SECRET", "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME",
                 "DINGTALK_CREDENTIAL_PROVIDER_NAME", "PORT"):
        assert name in message


def test_model_service_is_resolved_lazily_once(cloud):
    env = {k: v for k, v in cloud.env.items() if k not in ("MODEL_BASE_URL", "MODEL_API_KEY")}
    env["MODEL_SERVICE_NAME"] = cloud.info["model_service_name"]
    calls = f"{cloud.url('agentrun')}/emulator/calls"
    httpx.post(f"{cloud.url('agentrun')}/emulator/reset")
    with serve_app(env) as base_url:
        assert httpx.get(calls).json().get("GetModelService", 0) == 0, "no network call at start-up"
        auth = {"Authorization": f"Bearer {cloud.issue_user_jwt('alice')}"}
        for _ in range(2):
            response = httpx.post(f"{base_url}{CHAT}", headers=auth, timeout=30,
                                  json={"messages": [{"role": "user", "content": "hello there"}]})
            assert response.status_code == 200, response.text
        assert httpx.get(calls).json()["GetModelService"] == 1
        assert "qwen-plus" in [m["id"] for m in httpx.get(f"{base_url}/openai/v1/models", headers=auth).json()["data"]]


def test_a_model_service_that_names_a_stored_credential_is_resolved_with_get_credential(cloud):
    """AgentRun may return no inline apiKey but a credentialName; the key is read as the agentrun SDK does."""
    env = {k: v for k, v in cloud.env.items() if k not in ("MODEL_BASE_URL", "MODEL_API_KEY")}
    env["MODEL_SERVICE_NAME"] = cloud.info["model_service_with_credential"]
    httpx.post(f"{cloud.url('agentrun')}/emulator/reset")
    with serve_app(env) as base_url:
        response = httpx.post(f"{base_url}{CHAT}", timeout=30,
                              headers={"Authorization": f"Bearer {cloud.issue_user_jwt('stored-key')}"},
                              json={"messages": [{"role": "user", "content": "hello there"}]})
        counted = httpx.get(f"{cloud.url('agentrun')}/emulator/calls").json()
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    assert (counted["GetModelService"], counted["GetCredential"]) == (1, 1)


def test_port_from_environment():
    from settings.server import ServerSettings

    assert ServerSettings.from_env({}).port == 9000
    assert ServerSettings.from_env({"PORT": "8000"}).port == 8000
    assert ServerSettings.from_env({"PORT": "8000", "FC_CUSTOM_LISTEN_PORT": "9100"}).port == 9100
    assert ServerSettings.from_env({}).host == "0.0.0.0"
