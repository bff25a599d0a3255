"""read_oss_object with the real AgentIdentity, the real OSS SDK and the emulators: the answer the model gets,
the outcome the runner reports, and the session policy the STS credentials were issued with."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from langchain_core.messages import ToolMessage

from identity.context import RequestContext, bind_request_context, reset_request_context
from tests.support.tools import Session, make_session  # noqa: F401 - make_session is a fixture
from tools.tool import session_policy
from tools.oss_client import needs_path_style

TOOL = "read_oss_object"


async def outcome(session: Session, **arguments) -> ToolMessage:
    """The ToolMessage as the agent gets it: the model's text plus the runner's artifact."""
    token = bind_request_context(RequestContext(caller=session.caller, session_id=None, request_id="test",
                                                emit=session.emit, wait_for_authorization=False))
    try:
        return await session.tools[TOOL].ainvoke({"type": "tool_call", "id": "call-1", "name": TOOL,
                                                  "args": arguments})
    finally:
        reset_request_context(token)


def policies_issued_to(cloud, user: str) -> list[str | None]:
    return [sts["policy"] for sts in cloud.issued()["sts_credentials"] if sts["subject"] == user]


async def test_reads_a_text_object_with_credentials_for_that_object_only(fresh_cloud, make_session):
    session = await make_session("oss-ann")
    message = await outcome(session, bucket="agent-docs", key="notes/welcome.txt")
    size = len(fresh_cloud.oss.buckets["agent-docs"].objects["notes/welcome.txt"].data)
    assert message.content.startswith(f"oss://agent-docs/notes/welcome.txt (text/plain, {size:,} bytes):\n"
                                      "Welcome to the local OSS emulator.\n欢迎使用本地 OSS 模拟器。")
    assert message.artifact == {"ok": True}
    policy = session_policy(["oss:GetObject"], ["acs:oss:*:*:agent-docs/notes/welcome.txt"])
    assert policies_issued_to(fresh_cloud, "oss-ann") == [policy]
    assert json.loads(policy)["Statement"] == [{"Effect": "Allow", "Action": ["oss:GetObject"],
                                                "Resource": "acs:oss:*:*:agent-docs/notes/welcome.txt"}]


async def test_a_key_with_spaces_and_chinese_is_signed_and_scoped_as_it_is(fresh_cloud, make_session):
    session = await make_session("oss-zed")
    message = await outcome(session, bucket="agent-docs", key="notes/说明 v2.md")
    assert message.content.startswith("oss://agent-docs/notes/说明 v2.md (text/markdown, ")
    assert message.content.endswith("# 说明\n非 ASCII 的对象名。\n")
    assert policies_issued_to(fresh_cloud, "oss-zed") == [
        '{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:GetObject"],'
        '"Resource":"acs:oss:*:*:agent-docs/notes/说明 v2.md"}]}']


async def test_a_large_object_is_cut_at_the_cap_without_breaking_a_character(fresh_cloud, make_session):
    session = await make_session("oss-bob", OSS_MAX_OBJECT_BYTES="40")  # byte 40 falls inside "迎"
    message = await outcome(session, bucket="agent-docs", key="notes/welcome.txt")
    size = len(fresh_cloud.oss.buckets["agent-docs"].objects["notes/welcome.txt"].data)
    assert message.content == (f"oss://agent-docs/notes/welcome.txt (text/plain) is {size:,} bytes; only the "
                               "first 40 are shown:\nWelcome to the local OSS emulator.\n欢")
    session = await make_session("oss-bob", OSS_MAX_OBJECT_BYTES="1000")
    message = await outcome(session, bucket="agent-docs", key="logs/large.log")
    assert "only the first 1,000 are shown" in message.content and len(message.content) < 1200
    async with httpx.AsyncClient() as http:  # a ranged GET: the rest of the object never travelled
        calls = (await http.get(f"{fresh_cloud.url('oss')}/emulator/calls")).json()
    assert calls == {"GET /agent-docs/notes/welcome.txt": 1, "GET /agent-docs/logs/large.log": 1}


async def test_a_binary_object_is_described_not_dumped(fresh_cloud, make_session):
    session = await make_session("oss-cat")
    message = await outcome(session, bucket="agent-docs", key="images/logo.png")
    size = len(fresh_cloud.oss.buckets["agent-docs"].objects["images/logo.png"].data)
    assert message.content == (f"oss://agent-docs/images/logo.png is {size:,} bytes of image/png, not text, "
                               "so its content is not shown.")
    assert message.artifact == {"ok": True}


@pytest.mark.parametrize(("bucket", "key", "answer", "code"), [
    ("agent-docs", "notes/nothing.txt", "There is no object 'notes/nothing.txt' in bucket 'agent-docs'.",
     "oss_no_such_key"),
    ("no-such-bucket", "a.txt",
     "There is no bucket 'no-such-bucket' in region cn-hangzhou; check the name and the region.",
     "oss_no_such_bucket"),
    ("finance-private", "reports/salaries.txt",
     "The agent is not allowed to read oss://finance-private/reports/salaries.txt (access denied).",
     "oss_access_denied"),
])
async def test_oss_errors_are_short_sentences(fresh_cloud, make_session, bucket, key, answer, code):
    session = await make_session("oss-dan")
    message = await outcome(session, bucket=bucket, key=key)
    assert (message.content, message.artifact) == (answer, {"ok": False, "code": code})


@pytest.mark.parametrize("key", ["notes/*", "notes/welcome.tx?", "/notes/welcome.txt", "x" * 1024])
async def test_keys_that_are_not_one_exact_object_are_refused_before_any_credential(fresh_cloud, make_session,
                                                                                    key):
    session = await make_session("oss-eve")
    fresh_cloud.reset()
    message = await outcome(session, bucket="agent-docs", key=key)
    assert message.content.startswith("Invalid tool arguments, nothing was done. key: ")
    assert policies_issued_to(fresh_cloud, "oss-eve") == []


async def test_refused_credentials_are_replaced_once(fresh_cloud, make_session):
    session = await make_session("oss-fay")
    assert (await outcome(session, bucket="agent-docs", key="notes/other.txt")).artifact == {"ok": True}
    fresh_cloud.sts_credentials.expire_all()  # expired at the service before the expiry our cache holds
    message = await outcome(session, bucket="agent-docs", key="notes/other.txt")
    assert message.artifact == {"ok": True} and "Another object" in message.content
    async with httpx.AsyncClient() as http:
        calls = (await http.get(f"{fresh_cloud.url('oss')}/emulator/calls")).json()
    assert calls == {"GET /agent-docs/notes/other.txt": 3}


async def test_an_unreachable_oss_and_a_region_argument(fresh_cloud, make_session):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    session = await make_session("oss-gus", OSS_ENDPOINT=closed)
    message = await outcome(session, bucket="agent-docs", key="notes/other.txt")
    assert (message.content, message.artifact["code"]) == (
        "OSS could not be reached or did not answer in time; please try again later.", "aliyun_unreachable")
    session = await make_session("oss-gus")  # this endpoint serves cn-hangzhou: a cn-shanghai signature fails
    message = await outcome(session, bucket="agent-docs", key="notes/other.txt", region="cn-shanghai")
    assert message.artifact == {"ok": False, "code": "aliyun_rejected"}
    assert message.content.startswith("OSS refused to read oss://agent-docs/notes/other.txt (code: "
                                      "SignatureDoesNotMatch, request id: ")


@pytest.mark.parametrize(("endpoint", "path_style"), [
    ("", False), ("oss-cn-hangzhou.aliyuncs.com", False),
    ("https://oss-cn-hangzhou-internal.aliyuncs.com", False),
    ("http://127.0.0.1:9000", True), ("127.0.0.1:9000", True), ("https://localhost:8443", True),
    ("http://[::1]:9000", True),
])
def test_path_style_only_where_a_bucket_subdomain_cannot_resolve(endpoint, path_style):
    assert needs_path_style(endpoint) is path_style
