"""What OpenAI's own clients expect, through the official `openai` SDK (sync and async) against the app:
errors they raise as errors, fields the agent cannot honour refused by name, retry hints they obey, and the
small routes and options they rely on."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from emulators._server import listening_socket
from tests.support.app_server import serve_app

WRITE_PROMPT = "帮我写入“{text}”到钉钉文档，文档ID：{doc}"


@pytest.fixture(scope="module")
def server(cloud):
    sock = listening_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cloud.register_return_url(f"{public}/callback")  # the app's own /callback completes consents
    env = cloud.env | {"STREAM_KEEPALIVE_SECONDS": "5", "MODEL_MAX_RETRIES": "0", "APP_REDIRECT_URI": public,
                       "CORS_ALLOW_ORIGINS": "https://chat.example.com"}
    with serve_app(env, sock=sock) as base_url:
        yield base_url


def faults(cloud, name: str, **values) -> None:
    httpx.post(f"{cloud.url(name)}/emulator/faults", json=values, timeout=5).raise_for_status()


def clients(server: str, jwt: str, **options) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    base = f"{server}/openai/v1"
    return openai.OpenAI(base_url=base, api_key=jwt, **options), openai.AsyncOpenAI(base_url=base, api_key=jwt,
                                                                                    **options)


def test_a_mid_stream_error_is_raised_as_an_error_by_the_sdk(server, fresh_cloud):
    sync, _ = clients(server, fresh_cloud.issue_user_jwt("conf-mid"), max_retries=0)
    httpx.post(f"{fresh_cloud.url('model')}/emulator/stream", json={"error_after_chunks": 3}).raise_for_status()
    try:
        stream = sync.chat.completions.create(model="qwen-plus", stream=True,
                                              messages=[{"role": "user", "content": "hello there"}])
        with pytest.raises(openai.APIError) as raised:
            for _ in stream:
                pass
    finally:
        httpx.post(f"{fresh_cloud.url('model')}/emulator/reset")
    assert "model" in raised.value.message.lower()


async def test_401_and_model_429_are_the_sdk_s_own_errors_with_retry_after(server, fresh_cloud):
    _, unauthenticated = clients(server, "not-a-jwt", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await unauthenticated.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "x"}])
    _, client = clients(server, fresh_cloud.issue_user_jwt("conf-429"), max_retries=0)
    faults(fresh_cloud, "model", fail_next=1, fail_kind="throttle")
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hello"}])
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.code == "model_rate_limited"


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"n": 2}, "n"),
    ({"functions": [{"name": "f", "parameters": {"type": "object"}}]}, "functions"),
    ({"function_call": {"name": "f"}}, "function_call"),
    ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"web_search_options": {}}, "web_search_options"),
])
def test_fields_the_agent_cannot_honour_are_a_400_naming_them(server, fresh_cloud, extra, param):
    sync, _ = clients(server, fresh_cloud.issue_user_jwt("conf-400"), max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        sync.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hello"}], **extra)
    assert raised.value.param == param


def test_a_conversation_ending_with_an_assistant_message_is_a_400(server, fresh_cloud):
    """Assistant prefill (continue this partial answer) would run the agent and its tools again."""
    sync, _ = clients(server, fresh_cloud.issue_user_jwt("conf-prefill"), max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        sync.chat.completions.create(model="qwen-plus", messages=[
            {"role": "user", "content": "write hello"}, {"role": "assistant", "content": "> Running `write`"}])
    assert raised.value.param == "messages" and "assistant prefill" in raised.value.message


def test_stop_seed_and_a_null_stream_are_honoured(server, fresh_cloud):
    body = {"model": "qwen-plus", "stream": None, "stop": ["xyz"], "seed": 7,
            "messages": [{"role": "user", "content": "hello there"}]}
    response = httpx.post(f"{server}/openai/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {fresh_cloud.issue_user_jwt('conf-opts')}"})
    sent = httpx.get(f"{fresh_cloud.url('model')}/emulator/requests").json()[-1]
    assert response.status_code == 200 and response.json()["object"] == "chat.completion"
    assert sent["stop"] == ["xyz"] and sent["seed"] == 7


def test_the_endpoints_we_do_not_serve_name_chat_completions_and_each_client_s_switch(server, fresh_cloud):
    sync, _ = clients(server, fresh_cloud.issue_user_jwt("conf-unserved"), max_retries=0)
    with pytest.raises(openai.NotFoundError) as responses:
        sync.responses.create(model="qwen-plus", input="hello")
    with pytest.raises(openai.NotFoundError) as completions:
        sync.completions.create(model="qwen-plus", prompt="hello")
    for raised, endpoint in ((responses, "/responses"), (completions, "/completions")):
        assert raised.value.code == "endpoint_not_supported"
        message = raised.value.message
        assert f"`{endpoint}`" in message and "POST /openai/v1/chat/completions" in message
        for switch in ("openai.chat(model)", "OpenAIChatCompletionsModel", "is_chat_model=True",
                       "use_responses_api=False"):
            assert switch in message


def test_the_model_list_needs_the_bearer_jwt(server, fresh_cloud):
    """A client that checks its key with `models.list()` learns there that the key is wrong."""
    wrong, _ = clients(server, "not-a-jwt", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    with pytest.raises(openai.AuthenticationError):
        wrong.models.retrieve("qwen-plus")
    right, _ = clients(server, fresh_cloud.issue_user_jwt("conf-models-list"), max_retries=0)
    assert "qwen-plus" in [model.id for model in right.models.list()]


def test_models_retrieve_and_an_unknown_model(server, fresh_cloud):
    sync, _ = clients(server, fresh_cloud.issue_user_jwt("conf-models"), max_retries=0)
    assert sync.models.retrieve("qwen-plus").id == "qwen-plus"
    with pytest.raises(openai.NotFoundError):
        sync.models.retrieve("no-such-model")


def test_cors_is_on_for_the_allowed_origin_only(server):
    allowed = httpx.options(f"{server}/openai/v1/chat/completions", headers={
        "Origin": "https://chat.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    other = httpx.options(f"{server}/openai/v1/chat/completions", headers={
        "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://chat.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_langchain_chat_openai_gets_the_same_errors_and_the_consent_link(server, fresh_cloud):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    user = f"conf-lc-{time.monotonic_ns()}"

    def model(api_key: str) -> ChatOpenAI:
        return ChatOpenAI(model="qwen-plus", base_url=f"{server}/openai/v1", api_key=api_key, max_retries=0)

    @tool
    def lookup() -> str:
        """Look something up."""
        return "x"

    with pytest.raises(openai.AuthenticationError):
        await model("not-a-jwt").ainvoke("hello")
    jwt = fresh_cloud.issue_user_jwt(user)
    faults(fresh_cloud, "model", fail_next=1, fail_kind="throttle")
    with pytest.raises(openai.RateLimitError):
        await model(jwt).ainvoke("hello")
    with pytest.raises(openai.BadRequestError) as refused:
        await model(jwt).bind_tools([lookup]).ainvoke("hello")
    assert refused.value.param == "tools"
    httpx.post(f"{fresh_cloud.url('model')}/emulator/stream", json={"error_after_chunks": 3}).raise_for_status()
    try:
        with pytest.raises(openai.APIError):
            async for _ in model(jwt).astream("hello there"):
                pass
    finally:
        httpx.post(f"{fresh_cloud.url('model')}/emulator/reset")
    # The consent link arrives in the stream at once; the stream goes on after approval.
    text, approved = "", False
    marker = "Please click the link to authorize Write to DingTalk document: "
    async for chunk in model(jwt).astream(WRITE_PROMPT.format(text="via langchain", doc="docLc1")):
        text += chunk.content
        if not approved and marker in text and text.split(marker, 1)[1].endswith(" \n\n"):
            approved = True
            link = text.split(marker, 1)[1].split()[0]
            async with httpx.AsyncClient(trust_env=False) as browser:
                assert (await browser.get(link)).status_code == 200
                back = await browser.post(link, data={"decision": "approve"})
                await browser.get(back.headers["location"], headers={"Authorization": f"Bearer {jwt}"})
    assert approved and "Wrote 13 characters" in text
