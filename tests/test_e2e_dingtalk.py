"""End to end through app.py with the openai SDK: a user writes to their DingTalk document.

Every test is a real conversation: the app, the scripted model, Agent Identity, DingTalk and STS emulators
over loopback HTTP; the user's consent is given on the emulator's consent page and delivered to the app's
own /callback. Each test uses its own user, so vaulted tokens never carry over between tests.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.support.e2e import User, dingtalk_faults, document_content
from tests.support.e2e import product, user_named  # noqa: F401 - fixtures

LINK_TEXT = "Please click the link to authorize Write to DingTalk document: "


async def authorized(user: User, doc_key: str) -> None:
    """Bring `user` to the state "DingTalk authorized" with one approved write."""
    reply = await user.chat_stream(f"帮我写入“setup”到钉钉文档，文档ID：{doc_key}", on_link=user.approve)
    assert "authorization_completed" in reply.event_types()


async def test_the_product_example_in_chinese(product, user_named):
    user = user_named("zh-user")
    reply = await user.chat_stream("帮我写入“Helloworld”到钉钉文档，文档ID：docZh1", on_link=user.approve)

    assert LINK_TEXT + reply.link() in reply.text
    types = reply.event_types()
    assert types.index("authorization_required") < types.index("authorization_completed")
    assert reply.finish_reason == "stop"
    assert "已完成" in reply.text and "Wrote 10 characters to DingTalk document docZh1" in reply.text
    assert await document_content(product, "docZh1") == "Helloworld"

    again = await user.chat_stream("帮我写入“Hello again”到钉钉文档，文档ID：docZh1")
    assert "authorization_required" not in again.event_types() and "Please click" not in again.text
    assert await document_content(product, "docZh1") == "Hello again"


async def test_the_product_example_in_english(product, user_named):
    user = user_named("en-user")
    reply = await user.chat_stream('Please write "Helloworld" to the DingTalk document ID: docEn1',
                                   on_link=user.approve)
    assert LINK_TEXT in reply.text and reply.finish_reason == "stop"
    assert "Done. write_dingtalk_document returned: Wrote 10 characters" in reply.text
    assert await document_content(product, "docEn1") == "Helloworld"


async def test_caller_identity_needs_no_user_authorization(product, user_named):
    user = user_named("cloud-user")
    reply = await user.chat_stream("Who am I on Alibaba Cloud?")
    account = product.cloud.info["account_id"]
    assert f"account {account}" in reply.text and f"acs:ram::{account}:assumed-role/" in reply.text
    assert "AssumedRoleUser" in reply.text and "authorization_required" not in reply.event_types()
    assert reply.finish_reason == "stop"


async def test_the_profile_tool_shares_the_users_dingtalk_authorization(product, user_named):
    """The second DingTalk tool asks the same provider for the same scopes: one consent serves both."""
    user = user_named("profile-user")
    first = await user.chat_stream("Call the tool read_dingtalk_profile with {}", on_link=user.approve)
    assert "Please click the link to authorize Read your DingTalk profile: " in first.text
    assert "On DingTalk you are profile-user (unionId " in first.text and first.finish_reason == "stop"
    written = await user.chat_stream("帮我写入“after profile”到钉钉文档，文档ID：docProfile1")
    assert "authorization_required" not in written.event_types()
    assert await document_content(product, "docProfile1") == "after profile"


async def test_declined_authorization_ends_with_a_clear_answer(product, user_named):
    user = user_named("decliner")
    landings = []

    async def decline(url: str) -> None:
        landings.append(await user.answer_consent(url, "deny"))

    reply = await user.chat_stream("帮我写入“Helloworld”到钉钉文档，文档ID：docNo1", on_link=decline)
    assert landings[0].status_code == 200 and "declined" in landings[0].text.lower()
    assert reply.finish_reason == "stop" and "declined" in reply.text.lower()
    assert "error" not in reply.event_types()
    assert await document_content(product, "docNo1") is None


async def test_timed_out_authorization_ends_with_a_clear_answer(product, user_named):
    user = user_named("slowpoke", app="impatient")
    reply = await user.chat_stream("帮我写入“Helloworld”到钉钉文档，文档ID：docLate1")
    assert LINK_TEXT in reply.text
    assert reply.finish_reason == "stop" and "not completed in time" in reply.text
    assert await document_content(product, "docLate1") is None


async def test_revoked_token_mid_session_asks_for_authorization_again(product, user_named):
    user = user_named("revoked-user")
    await authorized(user, "docRv1")
    async with httpx.AsyncClient() as http:
        revoked = await http.post(f"{product.cloud.url('dingtalk')}/emulator/revoke", json={"subject": user.sub})
    assert revoked.json()["revoked"] >= 1
    reply = await user.chat_stream("帮我写入“after revoke”到钉钉文档，文档ID：docRv1", on_link=user.approve)
    assert reply.event_types().count("authorization_required") == 1
    assert await document_content(product, "docRv1") == "after revoke"


async def test_dingtalk_server_errors_reach_the_user_as_a_short_message(product, user_named):
    user = user_named("unlucky-5xx")
    await authorized(user, "docErr1")
    await dingtalk_faults(product, fail_next=2, fail_status=503)
    reply = await user.chat_stream("帮我写入“lost”到钉钉文档，文档ID：docErr1")
    assert "DingTalk had a server error" in reply.text and "requestid: " in reply.text
    assert reply.finish_reason == "stop"
    assert await document_content(product, "docErr1") == "setup"


async def test_one_dingtalk_hiccup_is_retried(product, user_named):
    user = user_named("unlucky-once")
    await authorized(user, "docErr2")
    await dingtalk_faults(product, fail_next=1, fail_status=502)
    reply = await user.chat_stream("帮我写入“made it”到钉钉文档，文档ID：docErr2")
    assert "Wrote 7 characters" in reply.text
    assert await document_content(product, "docErr2") == "made it"


async def test_a_throttled_dingtalk_write_backs_off_and_succeeds_without_a_link(product, user_named):
    user = user_named("throttled")
    await authorized(user, "docErr3")
    await dingtalk_faults(product, fail_next=2, fail_kind="throttle")  # DingTalk's 403 QpsLimitForApi, twice
    reply = await user.chat_stream("帮我写入“slow down”到钉钉文档，文档ID：docErr3")
    assert "Wrote 9 characters" in reply.text and "authorization_required" not in reply.event_types()
    assert await document_content(product, "docErr3") == "slow down"


async def test_non_stream_answer_carries_the_link_and_each_ask_gets_a_fresh_one(product, user_named):
    user = user_named("no-stream")
    prompt = "帮我写入“Helloworld”到钉钉文档，文档ID：docNs1"
    first = await user.chat(prompt)
    assert LINK_TEXT in first.text and "ask again" in first.text
    link = first.text.split(LINK_TEXT, 1)[1].split()[0]
    assert first.text.count(link) == 1  # shown once, though both the event and the model's answer carry it
    # The machine-readable request too, once, naming the same link as the text.
    assert [e for e in first.events if e["type"].startswith("authorization")] == [
        {"type": "authorization_required", "url": link, "purpose": "Write to DingTalk document",
         "provider": product.cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"]}]
    # The tool did not do its job yet, and the events say so (not "ok": true).
    assert {"type": "tool_finished", "tool": "write_dingtalk_document", "ok": False,
            "code": "authorization_required"} in first.events
    # An authorization URL works once, so a link shown before is never shown again: asking again gives a new
    # one, and approving either puts the token in the vault that the next ask reads.
    second = await user.chat(prompt)
    assert second.link() != link and second.link() in second.text
    await user.approve(link)
    third = await user.chat(prompt)
    assert "Wrote 10 characters" in third.text and "Please click" not in third.text
    assert await document_content(product, "docNs1") == "Helloworld"


async def test_two_users_authorize_concurrently_without_crossing(product, user_named):
    alice, bob = user_named("para-alice"), user_named("para-bob")
    replies = await asyncio.gather(
        alice.chat_stream("帮我写入“from alice”到钉钉文档，文档ID：docPa1", on_link=alice.approve),
        bob.chat_stream("帮我写入“from bob”到钉钉文档，文档ID：docPb1", on_link=bob.approve))
    assert all(reply.finish_reason == "stop" for reply in replies)
    assert await document_content(product, "docPa1") == "from alice"
    assert await document_content(product, "docPb1") == "from bob"
