"""End to end through app.py with the openai SDK: a user asks the agent to read an OSS object.

The app, the scripted model, Agent Identity and the OSS emulator over loopback HTTP; the tool signs with the
real alibabacloud-oss-v2 client. The last test takes the STS credentials the app was issued for one object and
shows, with the same SDK, that they cannot read another.
"""

from __future__ import annotations

import json

import alibabacloud_oss_v2 as oss
from alibabacloud_oss_v2.aio import AsyncClient
import pytest
from alibabacloud_oss_v2.credentials import StaticCredentialsProvider

from tests.support.e2e import product, user_named  # noqa: F401 - fixtures

WELCOME = "oss://agent-docs/notes/welcome.txt"


def finished(reply) -> dict:
    return next(e for e in reply.events if e["type"] == "tool_finished")


async def test_a_user_reads_a_text_object(user_named):
    reply = await user_named("oss-reader").chat_stream(f"Read {WELCOME}")
    assert f"Done. read_oss_object returned: {WELCOME} (text/plain, " in reply.text
    assert "Welcome to the local OSS emulator." in reply.text and reply.finish_reason == "stop"
    assert finished(reply) == {"type": "tool_finished", "tool": "read_oss_object", "ok": True}


async def test_a_chinese_prompt_reads_and_a_binary_object_is_described(user_named):
    reply = await user_named("oss-reader-zh").chat("读取 oss://agent-docs/images/logo.png")
    assert "已完成。工具 read_oss_object 返回：oss://agent-docs/images/logo.png is " in reply.text
    assert "of image/png, not text, so its content is not shown." in reply.text


async def test_a_missing_key_and_a_denied_bucket_are_short_answers(user_named):
    user = user_named("oss-misser")
    reply = await user.chat_stream("Read oss://agent-docs/notes/nothing.txt")
    assert "There is no object 'notes/nothing.txt' in bucket 'agent-docs'." in reply.text
    assert finished(reply) == {"type": "tool_finished", "tool": "read_oss_object", "ok": False,
                               "code": "oss_no_such_key"}
    reply = await user.chat_stream("Read oss://finance-private/reports/salaries.txt")
    assert "The agent is not allowed to read oss://finance-private/reports/salaries.txt" in reply.text
    assert "Not for the agent" not in reply.text and finished(reply)["code"] == "oss_access_denied"


async def test_the_credentials_issued_for_one_object_cannot_read_another(product, user_named):
    reply = await user_named("oss-scoped").chat_stream(f"Read {WELCOME}")
    assert finished(reply)["ok"] is True
    issued = [sts for sts in product.cloud.issued()["sts_credentials"] if sts["subject"] == "oss-scoped"]
    assert len(issued) == 1
    sts = issued[0]
    assert json.loads(sts["policy"])["Statement"][0]["Resource"] == "acs:oss:*:*:agent-docs/notes/welcome.txt"
    provider = StaticCredentialsProvider(sts["access_key_id"], sts["access_key_secret"], sts["security_token"])
    config = oss.Config(region="cn-hangzhou", endpoint=product.cloud.url("oss"), use_path_style=True,
                        credentials_provider=provider, retry_max_attempts=1)
    async with AsyncClient(config) as client:  # trusts SSL_CERT_FILE, as the product's client does
        welcome = await client.get_object(oss.GetObjectRequest(bucket="agent-docs", key="notes/welcome.txt"))
        assert welcome.status_code == 200
        with pytest.raises(oss.exceptions.OperationError) as caught:  # the role may, these credentials not
            await client.get_object(oss.GetObjectRequest(bucket="agent-docs", key="notes/other.txt"))
    error = caught.value.unwrap()
    assert (error.status_code, error.code) == (403, "AccessDenied")
