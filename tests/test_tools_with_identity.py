"""The tools with the real AgentIdentity against the emulators: credentials, authorization, scoped STS.

These call the LangChain tools directly (no model, no app) inside a bound request context, the way the
agent does; the end-to-end tests in test_e2e_*.py go through app.py with the openai SDK.
"""

from __future__ import annotations

import asyncio
import json
import socket
from urllib.parse import parse_qs, urlsplit

import httpx

from identity.context import AuthorizationCompleted, AuthorizationRequired
from tests.support.tools import Session, make_session  # noqa: F401 - make_session is a fixture
from tools.tool import session_policy


async def answer_consent(url: str, decision: str) -> dict[str, str]:
    """Do what the user's browser does on the consent page; returns the redirect's query parameters."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(url)
        assert page.status_code == 200 and "Approve" in page.text
        response = await browser.post(url, data={"decision": decision})
    assert response.status_code == 302
    return {key: values[0] for key, values in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def approve(session: Session, url: str) -> None:
    """Consent, then complete the session as our /callback would (the e2e tests use the real callback)."""
    redirect = await answer_consent(url, "approve")
    await session.identity.complete_authorization(session_uri=redirect["session_uri"],
                                                  flow=session.identity.open_state(redirect["state"]))


async def dingtalk_document(cloud, doc_key: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{cloud.url('dingtalk')}/emulator/documents/{doc_key}")).json()["content"]


async def test_caller_identity_uses_sts_scoped_to_the_tool_s_actions(fresh_cloud, make_session):
    session = await make_session("ada")
    answer = await session.call("get_alibaba_cloud_caller_identity")
    account = fresh_cloud.info["account_id"]
    assert f"account {account}" in answer and f"acs:ram::{account}:assumed-role/" in answer
    assert "AssumedRoleUser" in answer
    issued = [sts for sts in fresh_cloud.issued()["sts_credentials"] if sts["subject"] == "ada"]
    assert session_policy(["sts:GetCallerIdentity"]) in {sts["policy"] for sts in issued}
    for sts in issued:
        assert sts["access_key_secret"] not in answer and sts["security_token"] not in answer


async def test_sts_credentials_refused_before_their_expiry_are_replaced_once(fresh_cloud, make_session):
    session = await make_session("cyd")
    assert "assumed-role" in await session.call("get_alibaba_cloud_caller_identity")
    async with httpx.AsyncClient() as http:  # STS credentials and workload tokens expire early, at the service
        (await http.post(f"{fresh_cloud.url('agent_identity')}/emulator/expire-tokens")).raise_for_status()
    fresh_cloud.reset()
    answer = await session.call("get_alibaba_cloud_caller_identity")
    assert "assumed-role" in answer, answer
    async with httpx.AsyncClient() as http:
        sts_calls = (await http.get(f"{fresh_cloud.url('sts')}/emulator/calls")).json()
        identity_calls = (await http.get(f"{fresh_cloud.url('agent_identity')}/emulator/calls")).json()
    assert sum(sts_calls.values()) == 2  # refused once, then answered with the fresh credentials
    # The cached workload token is refused too: exchanged again, then one AssumeRole for the scoped policy.
    assert identity_calls == {"AssumeRoleForWorkloadIdentity": 2, "GetWorkloadAccessTokenForJWT": 1}


def test_session_policy_allows_only_the_declared_actions():
    policy = json.loads(session_policy(["sts:GetCallerIdentity", "oss:GetObject", "sts:GetCallerIdentity"]))
    assert policy == {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["oss:GetObject", "sts:GetCallerIdentity"], "Resource": "*"}]}


async def test_sts_failure_is_a_short_answer_with_code_and_request_id(fresh_cloud, make_session):
    session = await make_session("ada")
    async with httpx.AsyncClient() as http:
        await http.post(f"{fresh_cloud.url('sts')}/emulator/faults", json={"fail_next": 1, "fail_status": 503})
    answer = await session.call("get_alibaba_cloud_caller_identity")
    assert answer.startswith("Alibaba Cloud had a server error") and "request id" in answer


async def test_invalid_arguments_are_refused_before_any_credential_is_asked_for(fresh_cloud, make_session):
    session = await make_session("bea")
    fresh_cloud.reset()
    answer = await session.call("write_dingtalk_document", document_id="../../etc/passwd", content="x")
    assert answer.startswith("Invalid tool arguments") and "document_id" in answer
    answer = await session.call("write_dingtalk_document", document_id="doc1", content="z" * 50_001)
    assert answer.startswith("Invalid tool arguments") and "content" in answer
    async with httpx.AsyncClient() as http:
        for name in ("agent_identity", "dingtalk"):
            assert (await http.get(f"{fresh_cloud.url(name)}/emulator/calls")).json() == {}


async def test_stream_mode_waits_for_consent_then_writes(cloud, make_session):
    session = await make_session("cyd")
    call = asyncio.create_task(session.call("write_dingtalk_document", document_id="docS1", content="Helloworld"))
    await approve(session, await asyncio.wait_for(session.links.get(), 10))
    answer = await asyncio.wait_for(call, 30)
    assert answer == "Wrote 10 characters to DingTalk document docS1."
    assert await dingtalk_document(cloud, "docS1") == "Helloworld"
    assert [type(e) for e in session.events] == [AuthorizationRequired, AuthorizationCompleted]
    assert await session.call("write_dingtalk_document", document_id="docS1", content="again") \
        == "Wrote 5 characters to DingTalk document docS1."
    assert len(session.events) == 2  # the second write needed no new link


async def test_non_stream_mode_answers_with_a_fresh_link_each_ask(cloud, make_session):
    session = await make_session("dov", stream=False)
    first = await session.call("write_dingtalk_document", document_id="docN1", content="Helloworld")
    assert first.startswith("Please click the link to authorize Write to DingTalk document: http")
    assert "ask again" in first
    second = await session.call("write_dingtalk_document", document_id="docN1", content="Helloworld")
    assert second.startswith("Please click") and second != first  # an authorization URL works once
    await approve(session, first.split(": ", 1)[1].split()[0])
    third = await session.call("write_dingtalk_document", document_id="docN1", content="Helloworld")
    assert third == "Wrote 10 characters to DingTalk document docN1."
    assert await dingtalk_document(cloud, "docN1") == "Helloworld"


async def test_revoked_token_is_reauthorized_once_mid_session(cloud, make_session):
    session = await make_session("eli")
    call = asyncio.create_task(session.call("write_dingtalk_document", document_id="docR1", content="one"))
    await approve(session, await asyncio.wait_for(session.links.get(), 10))
    await asyncio.wait_for(call, 30)
    async with httpx.AsyncClient() as http:
        await http.post(f"{cloud.url('dingtalk')}/emulator/revoke", json={"subject": "eli"})
    call = asyncio.create_task(session.call("write_dingtalk_document", document_id="docR1", content="two"))
    await approve(session, await asyncio.wait_for(session.links.get(), 10))
    assert await asyncio.wait_for(call, 30) == "Wrote 3 characters to DingTalk document docR1."
    assert await dingtalk_document(cloud, "docR1") == "two"


async def test_declined_authorization_is_a_clear_answer(cloud, make_session):
    session = await make_session("fay")
    call = asyncio.create_task(session.call("write_dingtalk_document", document_id="docD1", content="x"))
    redirect = await answer_consent(await asyncio.wait_for(session.links.get(), 10), "deny")
    assert redirect["error"] == "access_denied"
    answer = await asyncio.wait_for(call, 30)
    assert "declined" in answer.lower()


async def test_timed_out_authorization_is_a_clear_answer(cloud, make_session):
    session = await make_session("gus", AUTHORIZATION_TIMEOUT_SECONDS="0.5")
    answer = await asyncio.wait_for(
        session.call("write_dingtalk_document", document_id="docT1", content="x"), 30)
    assert "not completed in time" in answer


async def test_a_dingtalk_that_does_not_answer_in_time_is_a_clear_answer(cloud, make_session):
    session = await make_session("hal", TOOLS_HTTP_TIMEOUT_SECONDS="0.3")
    call = asyncio.create_task(session.call("write_dingtalk_document", document_id="docTo1", content="one"))
    await approve(session, await asyncio.wait_for(session.links.get(), 10))
    await asyncio.wait_for(call, 30)
    async with httpx.AsyncClient() as http:
        await http.post(f"{cloud.url('dingtalk')}/emulator/faults",
                        json={"fail_next": 1, "fail_kind": "timeout", "timeout_s": 1.0, "match": "docTo1"})
    answer = await session.call("write_dingtalk_document", document_id="docTo1", content="two")
    assert answer.startswith("DingTalk did not answer in time")


async def test_an_unreachable_sts_is_a_clear_answer(cloud, make_session):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    session = await make_session("ivy", STS_ENDPOINT=closed)
    assert await session.call("get_alibaba_cloud_caller_identity") == \
        "Alibaba Cloud could not be reached or did not answer in time; please try again later."


async def test_a_slow_sts_is_a_clear_answer(fresh_cloud, make_session):
    session = await make_session("jay", TOOLS_HTTP_TIMEOUT_SECONDS="0.3")
    async with httpx.AsyncClient() as http:
        await http.post(f"{fresh_cloud.url('sts')}/emulator/faults",
                        json={"fail_next": 1, "fail_kind": "timeout", "timeout_s": 1.0})
    assert await session.call("get_alibaba_cloud_caller_identity") == \
        "Alibaba Cloud could not be reached or did not answer in time; please try again later."
