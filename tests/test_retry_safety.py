"""A retry never repeats a side effect, whatever the client: real clients with their own retries (openai-python
`max_retries=2`, LangChain's `ChatOpenAI(...).with_retry()`, the openai npm package and the Vercel AI SDK's
`generateText` with their defaults, LiteLLM's `completion` and `Router` with `num_retries=2`) ask for a
document write whose run then fails at the model: the answer is a 200 saying what was done and what failed,
and the document is written once. A LiteLLM `Router` fallback after a mid-stream error does not run the agent
again (its continuation, a conversation ending with an assistant message, is a 400). And `Idempotency-Key`:
the same user's repeat, in turn or at the same time, gets the first answer without a second run."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from emulators._server import listening_socket
from tests.support.app_server import serve_app
from tests.support.identity import calls
from tests.support.js_clients import CLIENTS_DIR, NODE, run_client

WRITE_PROMPT = "帮我写入“{text}”到钉钉文档，文档ID：{doc}"
JS_MISSING = not NODE or not (CLIENTS_DIR / "node_modules" / "ai").is_dir()


@pytest.fixture(scope="module")
def server(cloud):
    sock = listening_socket()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cloud.register_return_url(f"{public}/callback")  # the app's own /callback completes consents
    env = cloud.env | {"MODEL_MAX_RETRIES": "0", "APP_REDIRECT_URI": public, "STREAM_KEEPALIVE_SECONDS": "5"}
    with serve_app(env, sock=sock) as base_url:
        yield base_url


def faults(cloud, name: str, **values) -> None:
    httpx.post(f"{cloud.url(name)}/emulator/faults", json=values, timeout=5).raise_for_status()


def model_requests(cloud) -> int:
    return len(httpx.get(f"{cloud.url('model')}/emulator/requests").json())


def writes(cloud) -> int:
    calls = httpx.get(f"{cloud.url('dingtalk')}/emulator/calls").json()
    return sum(n for key, n in calls.items() if "overwriteContent" in key)


async def authorized_user(cloud, server: str, name: str) -> str:
    """A new user whose DingTalk authorization is in the vault (asked once non-stream, approved like a
    browser); returns the user's JWT. Counters are reset afterwards."""
    user = f"{name}-{time.monotonic_ns()}"
    jwt = cloud.issue_user_jwt(user)
    client = openai.AsyncOpenAI(base_url=f"{server}/openai/v1", api_key=jwt, max_retries=0)
    first = await client.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": WRITE_PROMPT.format(text="setup", doc="docSetup")}])
    link = next(e["url"] for e in first.model_extra["agent_events"] if e["type"] == "authorization_required")
    async with httpx.AsyncClient(trust_env=False) as browser:
        await browser.get(link)
        back = await browser.post(link, data={"decision": "approve"})
        await browser.get(back.headers["location"], headers={"Authorization": f"Bearer {jwt}"})
    httpx.post(f"{cloud.url('model')}/emulator/requests/clear")
    httpx.post(f"{cloud.url('dingtalk')}/emulator/reset")
    return jwt


def fail_the_model_after_the_tool_call(cloud) -> asyncio.Task:
    """While the write runs (slowed down), the model's next call is set to fail with a 500 (the agent's 502)."""
    faults(cloud, "dingtalk", latency_ms=600)

    async def arm() -> None:
        while model_requests(cloud) < 1:
            await asyncio.sleep(0.02)
        faults(cloud, "model", fail_next=1, fail_status=500)

    return asyncio.create_task(arm())


def assert_reported_once(cloud, text: str) -> None:
    assert "stopped with an error after tools ran" in text and "`write_dingtalk_document`" in text, text
    assert writes(cloud) == 1
    assert model_requests(cloud) == 1  # one run: the failed second model call is refused before it is recorded


async def test_openai_python_with_retries_gets_a_200_and_the_document_is_written_once(server, fresh_cloud):
    jwt = await authorized_user(fresh_cloud, server, "retry-openai")
    client = openai.AsyncOpenAI(base_url=f"{server}/openai/v1", api_key=jwt, max_retries=2)
    failing = fail_the_model_after_the_tool_call(fresh_cloud)
    answer = await client.chat.completions.create(
        model="qwen-plus", messages=[{"role": "user", "content": WRITE_PROMPT.format(text="once", doc="docRetryPy")}])
    await failing
    assert answer.choices[0].finish_reason == "stop"
    events = answer.model_extra["agent_events"]
    assert {"type": "tool_finished", "tool": "write_dingtalk_document", "ok": True} in events
    assert events[-1] == {"type": "error", "code": "model_error"}
    assert_reported_once(fresh_cloud, answer.choices[0].message.content)


async def test_langchain_with_retry_gets_the_answer_and_the_document_is_written_once(server, fresh_cloud):
    jwt = await authorized_user(fresh_cloud, server, "retry-langchain")
    model = ChatOpenAI(base_url=f"{server}/openai/v1", api_key=jwt, model="qwen-plus", max_retries=0)
    failing = fail_the_model_after_the_tool_call(fresh_cloud)
    answer = await model.with_retry(stop_after_attempt=3).ainvoke(WRITE_PROMPT.format(text="once", doc="docRetryLc"))
    await failing
    assert_reported_once(fresh_cloud, answer.content)


@pytest.mark.skipif(JS_MISSING, reason="node or tests/js_clients/node_modules is missing (scripts/test runs npm ci)")
@pytest.mark.parametrize("client", ["openai", "ai-sdk"])
async def test_js_clients_with_their_default_retries_write_once(server, fresh_cloud, client):
    jwt = await authorized_user(fresh_cloud, server, f"retry-{client}")
    failing = fail_the_model_after_the_tool_call(fresh_cloud)
    result = await run_client(client, server, jwt, WRITE_PROMPT.format(text="once", doc=f"docRetryJs{len(client)}"),
                              scenario="generate")
    await failing
    assert result["error"] is None, result
    assert result["finishReason"] == "stop"
    assert_reported_once(fresh_cloud, result["text"])


async def test_a_repeated_idempotency_key_replays_the_answer_without_running_again(server, fresh_cloud):
    jwt = await authorized_user(fresh_cloud, server, "idem-repeat")
    client = openai.AsyncOpenAI(base_url=f"{server}/openai/v1", api_key=jwt, max_retries=0)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    ask = [{"role": "user", "content": WRITE_PROMPT.format(text="idem", doc="docIdem1")}]
    first = await client.chat.completions.with_raw_response.create(model="qwen-plus", messages=ask, extra_headers=key)
    again = await client.chat.completions.with_raw_response.create(model="qwen-plus", messages=ask, extra_headers=key)
    assert first.parse().id == again.parse().id and "Wrote 4" in again.parse().choices[0].message.content
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert writes(fresh_cloud) == 1 and model_requests(fresh_cloud) == 2  # one run: tool call, then the answer


async def test_concurrent_requests_with_one_key_run_once_and_both_get_the_answer(server, fresh_cloud):
    jwt = await authorized_user(fresh_cloud, server, "idem-concurrent")
    faults(fresh_cloud, "dingtalk", latency_ms=300)
    client = openai.AsyncOpenAI(base_url=f"{server}/openai/v1", api_key=jwt, max_retries=0)
    key = {"Idempotency-Key": uuid.uuid4().hex}
    ask = [{"role": "user", "content": WRITE_PROMPT.format(text="both", doc="docIdem2")}]
    answers = await asyncio.gather(*[client.chat.completions.create(model="qwen-plus", messages=ask,
                                                                    extra_headers=key) for _ in range(3)])
    assert len({answer.id for answer in answers}) == 1
    assert writes(fresh_cloud) == 1 and model_requests(fresh_cloud) == 2


async def test_a_streamed_answer_is_replayed_as_the_same_stream(server, fresh_cloud):
    httpx.post(f"{fresh_cloud.url('model')}/emulator/requests/clear")
    jwt = fresh_cloud.issue_user_jwt("idem-stream")
    body = {"model": "qwen-plus", "stream": True, "messages": [{"role": "user", "content": "hello there"}]}
    headers = {"Authorization": f"Bearer {jwt}", "Idempotency-Key": "stream-key-1"}
    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.post(f"{server}/openai/v1/chat/completions", json=body, headers=headers)
        again = await http.post(f"{server}/openai/v1/chat/completions", json=body, headers=headers)
    assert first.status_code == again.status_code == 200 and first.text == again.text
    assert again.headers["content-type"].startswith("text/event-stream") and first.text.endswith("data: [DONE]\n\n")
    assert model_requests(fresh_cloud) == 1


async def test_the_key_is_the_user_s_own_and_the_body_must_match(server, fresh_cloud):
    httpx.post(f"{fresh_cloud.url('model')}/emulator/requests/clear")
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hello there"}]}
    other_body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "something else"}]}
    async with httpx.AsyncClient(timeout=30) as http:
        async def ask(user: str, payload: dict) -> httpx.Response:
            headers = {"Authorization": f"Bearer {fresh_cloud.issue_user_jwt(user)}", "Idempotency-Key": "shared"}
            return await http.post(f"{server}/openai/v1/chat/completions", json=payload, headers=headers)

        alice, bob = await ask("idem-alice", body), await ask("idem-bob", body)
        reused = await ask("idem-alice", other_body)
    assert alice.status_code == bob.status_code == 200 and alice.json()["id"] != bob.json()["id"]
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert model_requests(fresh_cloud) == 2


async def test_a_failure_before_any_tool_is_not_kept_so_its_retry_runs(server, fresh_cloud):
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hello there"}]}
    headers = {"Authorization": f"Bearer {fresh_cloud.issue_user_jwt('idem-fail')}", "Idempotency-Key": "k-fail"}
    faults(fresh_cloud, "model", fail_next=1, fail_status=500)
    async with httpx.AsyncClient(timeout=30) as http:
        failed = await http.post(f"{server}/openai/v1/chat/completions", json=body, headers=headers)
        retried = await http.post(f"{server}/openai/v1/chat/completions", json=body, headers=headers)
    assert failed.status_code == 502 and retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers


async def run_litellm(scenario: str, server: str, jwt: str, prompt: str) -> dict:
    """tests/support/litellm_client.py in its own process (LiteLLM's global state stays out of this one)."""
    request = {"scenario": scenario, "server": server, "apiKey": jwt, "prompt": prompt}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.litellm_client", json.dumps(request), cwd=Path(__file__).parent.parent,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0 and out, err.decode()[-3000:]
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("scenario", ["completion", "router"])
async def test_litellm_retries_the_agent_s_502_when_no_tool_acted(server, fresh_cloud, scenario):
    """The control for the test below: LiteLLM's `num_retries=2` ignores `x-should-retry: false` and asks again
    (5 runs for `completion`, 3 for the `Router`, with the pinned version)."""
    jwt = fresh_cloud.issue_user_jwt(f"litellm-control-{scenario}")
    faults(fresh_cloud, "model", fail_next=20, fail_status=500)
    try:
        result = await run_litellm(scenario, server, jwt, "hello there")
        model_calls = sum((await calls(fresh_cloud, "model")).values())  # failed calls too, unlike model_requests
    finally:
        fresh_cloud.reset()  # the faults LiteLLM did not use must not reach a later test
    assert result["error"] == "BadGatewayError", result
    assert model_calls >= 3


@pytest.mark.parametrize("scenario", ["completion", "router"])
async def test_litellm_with_num_retries_gets_a_200_and_the_document_is_written_once(server, fresh_cloud, scenario):
    jwt = await authorized_user(fresh_cloud, server, f"retry-litellm-{scenario}")
    failing = fail_the_model_after_the_tool_call(fresh_cloud)
    result = await run_litellm(scenario, server, jwt, WRITE_PROMPT.format(text="once", doc=f"docLite{scenario}"))
    await failing
    assert result["error"] is None and result["finishReason"] == "stop", result
    assert_reported_once(fresh_cloud, result["text"])


@pytest.mark.parametrize("scenario", ["router-fallback-stream", "router-continuation-stream"])
async def test_a_litellm_router_fallback_after_a_mid_stream_error_does_not_write_again(server, fresh_cloud, scenario):
    """The stream's error event reaches the caller. With `enable_mid_stream_fallback_continuation`, LiteLLM asks
    the fallback to continue the broken answer (the conversation ending with it as an assistant message):
    that is refused with a 400, so the agent does not run again and LiteLLM raises the first error."""
    jwt = await authorized_user(fresh_cloud, server, f"fallback-litellm-{scenario}")
    failing = fail_the_model_after_the_tool_call(fresh_cloud)
    result = await run_litellm(scenario, server, jwt, WRITE_PROMPT.format(text="once", doc=f"docLite{scenario}"))
    await failing
    assert result["error"] == "APIConnectionError" and "The model returned an error" in result["message"], result
    assert writes(fresh_cloud) == 1 and model_requests(fresh_cloud) == 1
