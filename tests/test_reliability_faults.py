"""Reliability under faults, each injected through the emulators while the real server runs.

For every fault: the user gets a clear message or an OpenAI-shaped error, the server stays up, the next
request succeeds, and nothing is half-written (a DingTalk document holds either its old or its new content).
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import jwt as pyjwt
import pytest

from bench._harness import chat_body
from tests.support.app_server import serve_app
from tests.support.reliability import chat, server_request_tasks, set_faults

IDENTITY_QUESTION = "Who am I on Alibaba Cloud?"
_users = itertools.count()


def write_prompt(text: str, document: str) -> str:
    return f'Write "{text}" to the DingTalk document ID {document}'


@pytest.fixture(scope="module")
def server(cloud):
    env = cloud.env | {"MODEL_MAX_RETRIES": "0", "MODEL_TIMEOUT_SECONDS": "2", "TOOLS_HTTP_TIMEOUT_SECONDS": "2",
                       "AUTHORIZATION_TIMEOUT_SECONDS": "20", "STREAM_KEEPALIVE_SECONDS": "1"}
    state: dict = {}
    with serve_app(env, app_state=state) as base_url:
        yield base_url, state


@pytest.fixture
async def client(cloud):
    async with httpx.AsyncClient(trust_env=False, verify=cloud.ssl_context(), timeout=60) as http:
        yield http


def new_user(cloud, prefix: str) -> str:
    """A JWT for a user nobody has seen yet: every identity cache misses for them."""
    return cloud.issue_user_jwt(f"{prefix}-{next(_users)}")


async def document(cloud, client: httpx.AsyncClient, doc: str) -> str | None:
    response = await client.get(f"{cloud.url('dingtalk')}/emulator/documents/{doc}")
    return response.json()["content"] if response.status_code == 200 else None


async def assert_healthy(client: httpx.AsyncClient, base_url: str) -> None:
    assert (await client.get(f"{base_url}/health")).json() == {"status": "ok"}


def assert_openai_error(error: dict | None) -> None:
    assert error is not None
    assert set(error) >= {"message", "type", "code"}
    assert error["message"] and "Traceback" not in error["message"]


@pytest.fixture
async def writer(cloud, server, client):
    """A user who has already authorized DingTalk, and a document holding known content."""
    base_url, _ = server
    jwt = new_user(cloud, "writer")
    doc = f"fault{next(_users)}"
    first = await chat(client, base_url, jwt, write_prompt("version one", doc))
    assert first.done and await document(cloud, client, doc) == "version one", first.text
    return jwt, doc


# --- identity faults ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [
    {"fail_status": 503},
    {"fail_status": 500},
    {"fail_kind": "throttle"},
    {"fail_kind": "timeout", "timeout_s": 12.0},
], ids=["503", "500", "throttled", "timeout"])
async def test_identity_fault_gives_a_clear_message_then_recovers(cloud, fresh_cloud, server, client, fault):
    base_url, _ = server
    jwt = new_user(cloud, "identity-fault")
    set_faults(fresh_cloud, "agent_identity", fail_next=1, match="GetWorkloadAccessToken", **fault)

    failed = await chat(client, base_url, jwt, IDENTITY_QUESTION)

    assert failed.status == 200 and failed.done
    assert "assumed-role" not in failed.text
    assert "try again" in failed.text.lower(), failed.text
    assert "unavailable" in failed.text or "busy" in failed.text or "throttl" in failed.text, failed.text
    await assert_healthy(client, base_url)
    recovered = await chat(client, base_url, jwt, IDENTITY_QUESTION)
    assert recovered.done and "assumed-role" in recovered.text, recovered.text


async def test_sts_credentials_expiring_mid_session_are_replaced(cloud, fresh_cloud, server, client):
    base_url, _ = server
    jwt = new_user(cloud, "sts-expiry")
    assert "assumed-role" in (await chat(client, base_url, jwt, IDENTITY_QUESTION)).text

    httpx.post(f"{cloud.url('agent_identity')}/emulator/expire-tokens").raise_for_status()
    answer = await chat(client, base_url, jwt, IDENTITY_QUESTION)

    assert answer.done and "assumed-role" in answer.text, answer.text


# --- DingTalk faults ---------------------------------------------------------------------------------------

async def test_dingtalk_throttling_once_is_retried_and_written(cloud, fresh_cloud, server, client, writer):
    base_url, _ = server
    jwt, doc = writer
    set_faults(fresh_cloud, "dingtalk", fail_next=1, fail_kind="throttle", match="overwriteContent")

    answer = await chat(client, base_url, jwt, write_prompt("version two", doc))

    assert answer.done and await document(cloud, client, doc) == "version two", answer.text


@pytest.mark.parametrize("status", [500, 503])
async def test_dingtalk_server_errors_leave_the_old_content(cloud, fresh_cloud, server, client, writer, status):
    base_url, _ = server
    jwt, doc = writer
    set_faults(fresh_cloud, "dingtalk", fail_next=2, fail_status=status, match="overwriteContent")

    failed = await chat(client, base_url, jwt, write_prompt("version two", doc))

    assert failed.done and "not written" in failed.text, failed.text
    assert await document(cloud, client, doc) == "version one"
    await assert_healthy(client, base_url)
    recovered = await chat(client, base_url, jwt, write_prompt("version three", doc))
    assert recovered.done and await document(cloud, client, doc) == "version three"


async def test_dingtalk_persistent_throttling_says_so(cloud, fresh_cloud, server, client, writer):
    """DingTalk's throttling (403 QpsLimitForApi) is retried with back-off for the tool's budget, then the user
    reads "try again later" and gets no link: no authorization helps."""
    base_url, _ = server
    jwt, doc = writer
    set_faults(fresh_cloud, "dingtalk", fail_next=50, fail_kind="throttle", match="overwriteContent")

    failed = await chat(client, base_url, jwt, write_prompt("version two", doc))
    set_faults(fresh_cloud, "dingtalk", fail_next=0)

    assert failed.done and "rate-limited" in failed.text and "Try again later" in failed.text, failed.text
    assert "authorization_required" not in [e["type"] for e in failed.events]
    assert {"type": "tool_finished", "tool": "write_dingtalk_document", "ok": False,
            "code": "dingtalk_throttled"} in failed.events
    assert await document(cloud, client, doc) == "version one"


@pytest.mark.parametrize("how", ["revoked", "401"])
async def test_dingtalk_rejecting_the_token_asks_the_user_again(cloud, fresh_cloud, server, client, writer, how):
    """A revoked token is DingTalk's HTTP 400 InvalidAuthentication; a 401 is taken the same way."""
    base_url, _ = server
    jwt, doc = writer
    if how == "revoked":
        sub = pyjwt.decode(jwt, options={"verify_signature": False})["sub"]
        (await client.post(f"{cloud.url('dingtalk')}/emulator/revoke", json={"subject": sub})).raise_for_status()
    else:
        set_faults(fresh_cloud, "dingtalk", fail_next=1, fail_status=401, match="overwriteContent")

    answer = await chat(client, base_url, jwt, write_prompt("version two", doc))

    kinds = [e["type"] for e in answer.events]
    assert "authorization_required" in kinds and "authorization_completed" in kinds, answer.events
    assert answer.done and await document(cloud, client, doc) == "version two", answer.text


async def test_dingtalk_timeout_reports_and_recovers(cloud, fresh_cloud, server, client, writer):
    base_url, _ = server
    jwt, doc = writer
    set_faults(fresh_cloud, "dingtalk", fail_next=1, fail_kind="timeout", timeout_s=4.0, match="overwriteContent")

    failed = await chat(client, base_url, jwt, write_prompt("version two", doc))

    assert failed.done and "did not answer in time" in failed.text, failed.text
    assert await document(cloud, client, doc) in ("version one", "version two")  # never anything else
    fresh_cloud.reset()
    recovered = await chat(client, base_url, jwt, write_prompt("version three", doc))
    assert recovered.done and await document(cloud, client, doc) == "version three"


# --- model faults ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [{"fail_status": 500}, {"fail_status": 503},
                                   {"fail_kind": "timeout", "timeout_s": 4.0}], ids=["500", "503", "timeout"])
async def test_model_fault_is_an_openai_error_then_recovers(cloud, fresh_cloud, server, client, fault):
    base_url, _ = server
    jwt = new_user(cloud, "model-fault")
    set_faults(fresh_cloud, "model", fail_next=1, **fault)

    failed = await chat(client, base_url, jwt, "hello there")

    assert failed.status >= 500 or failed.error is not None
    assert_openai_error(failed.error)
    await assert_healthy(client, base_url)
    recovered = await chat(client, base_url, jwt, "hello there")
    assert recovered.done and recovered.error is None and "hello there" in recovered.text


# --- the client goes away ----------------------------------------------------------------------------------

async def test_client_disconnect_mid_stream_leaves_no_task_and_no_partial_write(cloud, fresh_cloud, server,
                                                                                client, writer):
    base_url, state = server
    jwt, doc = writer
    set_faults(fresh_cloud, "model", latency_ms=300)
    async with client.stream("POST", f"{base_url}/openai/v1/chat/completions",
                             json=chat_body(write_prompt("version two", doc)),
                             headers={"Authorization": f"Bearer {jwt}"}) as response:
        async for _ in response.aiter_raw():
            break  # the first bytes arrived: hang up
    set_faults(fresh_cloud, "model", latency_ms=0)

    await asyncio.sleep(1.5)  # let the server notice the disconnect and unwind
    assert await document(cloud, client, doc) in ("version one", "version two")
    await assert_healthy(client, base_url)
    leftover = await server_request_tasks(state)
    assert leftover == [], leftover
    recovered = await chat(client, base_url, jwt, write_prompt("version three", doc))
    assert recovered.done and await document(cloud, client, doc) == "version three"
