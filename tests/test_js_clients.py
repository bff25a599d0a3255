"""The agent through clients written in JavaScript by others: the official `openai` npm package and the Vercel
AI SDK (`ai` + `@ai-sdk/openai`) on the OpenAI route, and the AG-UI protocol's own `HttpAgent`
(`@ag-ui/client`) on `/ag-ui/agent`, pinned in tests/js_clients/package-lock.json and installed by scripts/test
with `npm ci`. Each client streams a plain chat and the consent flow, reports a mid-stream error, a 401 and a
429 as errors, and a client-supplied tool as the clear 400 it is."""

from __future__ import annotations


import httpx
import pytest

from emulators._server import listening_socket
from sandbox.browser import LinkFollowingBrowser
from tests.support.app_server import serve_app
from tests.support.e2e import document_content_at
from tests.support.js_clients import CLIENTS_DIR, NODE, run_client

CLIENTS = ["openai", "ai-sdk", "ag-ui"]

pytestmark = pytest.mark.skipif(not NODE or not (CLIENTS_DIR / "node_modules" / "ai").is_dir(),
                                reason="node or tests/js_clients/node_modules is missing (scripts/test runs npm ci)")


@pytest.fixture(scope="module")
def server(cloud):
    sock = listening_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cloud.register_return_url(f"{public}/callback")
    env = cloud.env | {"STREAM_KEEPALIVE_SECONDS": "5", "MODEL_MAX_RETRIES": "0", "APP_REDIRECT_URI": public,
                       "AUTHORIZATION_TIMEOUT_SECONDS": "30"}
    with serve_app(env, sock=sock) as base_url:
        yield base_url


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_plain_chat_streams(server, fresh_cloud, client):
    result = await run_client(client, server, fresh_cloud.issue_user_jwt(f"js-{client}"), "hello there")
    assert result["error"] is None and 'I understood your message: "hello there"' in result["text"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_the_consent_flow_goes_on_in_the_same_stream(server, fresh_cloud, client):
    user = f"js-consent-{client}"
    jwt = fresh_cloud.issue_user_jwt(user)
    doc = f"docJs{client.replace('-', '')}"

    async def person(link: str) -> None:
        browser = LinkFollowingBrowser()
        consent = await browser.open(link)
        back = await browser.http.post(str(consent.url), data={"decision": "approve"}, follow_redirects=False)
        await browser.http.get(back.headers["location"], headers={"Authorization": f"Bearer {jwt}"})
        await browser.aclose()

    result = await run_client(client, server, jwt, f"帮我写入“from {client}”到钉钉文档，文档ID：{doc}", on_link=person)
    assert result["error"] is None, result
    assert "Please click the link to authorize" in result["text"] and f"Wrote {len('from ' + client)}" in result["text"]
    assert await document_content_at(fresh_cloud, doc) == f"from {client}"


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_mid_stream_error_is_reported_as_an_error(server, fresh_cloud, client):
    httpx.post(f"{fresh_cloud.url('model')}/emulator/stream", json={"error_after_chunks": 3}).raise_for_status()
    try:
        result = await run_client(client, server, fresh_cloud.issue_user_jwt(f"js-mid-{client}"), "hello there")
    finally:
        httpx.post(f"{fresh_cloud.url('model')}/emulator/reset")
    assert result["error"] and "model" in result["error"].lower(), result
    assert result.get("finishReason") != "stop"
    if client == "ai-sdk":  # reported through onError, not thrown, as the README's "Clients" says
        assert result["finishReason"] == "error"


@pytest.mark.parametrize("client", CLIENTS)
async def test_401_429_and_a_client_tool_are_errors_with_their_status(server, fresh_cloud, client):
    unauthenticated = await run_client(client, server, "not-a-jwt", "hello")
    jwt = fresh_cloud.issue_user_jwt(f"js-errors-{client}")
    httpx.post(f"{fresh_cloud.url('model')}/emulator/faults", json={"fail_next": 1, "fail_kind": "throttle"})
    throttled = await run_client(client, server, jwt, "hello")
    with_tool = await run_client(client, server, jwt, "hello", scenario="tools")
    assert unauthenticated["status"] == 401, unauthenticated
    assert throttled["status"] == 429, throttled
    assert with_tool["status"] == 400 and "tools" in with_tool["error"], with_tool


@pytest.mark.parametrize("client", ["openai", "ai-sdk"])
async def test_the_client_s_responses_default_gets_a_404_naming_its_switch(server, fresh_cloud, client):
    result = await run_client(client, server, fresh_cloud.issue_user_jwt(f"js-unserved-{client}"), "hello",
                              scenario="unserved")
    assert result["status"] == 404, result
    assert "POST /openai/v1/chat/completions" in result["error"] and "openai.chat(model)" in result["error"]


async def test_the_ag_ui_client_keeps_the_tool_call_and_its_result_and_goes_on_with_them(server, fresh_cloud):
    """AG-UI's own events, in the order its client checks, and the conversation the client builds from them:
    the tool call with its arguments and result, then the answer; the next run sends all of it back."""
    jwt = fresh_cloud.issue_user_jwt("js-ag-ui-history")
    result = await run_client("ag-ui", server, jwt, "Who am I on Alibaba Cloud?", follow_up="hello again")
    assert result["error"] is None, result
    first_run = result["events"][:result["events"].index("RUN_FINISHED") + 1]
    assert first_run == ["RUN_STARTED", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT",
                         "TEXT_MESSAGE_START", *["TEXT_MESSAGE_CONTENT"] * first_run.count("TEXT_MESSAGE_CONTENT"),
                         "TEXT_MESSAGE_END", "RUN_FINISHED"]
    user, call, tool, answer, again, reply = result["messages"]
    assert (user["role"], call["role"], tool["role"], answer["role"], again["role"], reply["role"]) == (
        "user", "assistant", "tool", "assistant", "user", "assistant")
    assert call["toolCalls"][0]["function"] == {"name": "get_alibaba_cloud_caller_identity", "arguments": "{}"}
    assert tool["toolCallId"] == call["toolCalls"][0]["id"] and "Alibaba Cloud account" in tool["content"]
    assert "Alibaba Cloud account" in answer["content"]
    # The second run's model request held the whole conversation: the call, its result and the answer.
    async with httpx.AsyncClient() as http:
        sent = (await http.get(f"{fresh_cloud.url('model')}/emulator/requests")).json()[-1]["messages"]
    assert [m["role"] for m in sent][-5:] == ["user", "assistant", "tool", "assistant", "user"]
    assert 'I understood your message: "hello again"' in reply["content"]
