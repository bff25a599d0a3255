"""The DingTalk client and the write tool's rules, against the DingTalk emulator over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from emulators._server import serving
from emulators.dingtalk import DingTalkEmulator
from emulators.registry import CredentialRegistry
from tools.dingtalk import (MAX_CONTENT_CHARS, DingTalkClient, DingTalkError, WriteDocumentArgs,
                            _describe_failure, _write_with_reauthorization)
from tools.validation import describe_validation_error


@pytest.fixture(scope="module")
def dingtalk():
    """The DingTalk emulator on a free port, with its token registry (what Agent Identity would issue into)."""
    tokens = CredentialRegistry("dt-")
    emulator = DingTalkEmulator(tokens)
    with serving("dingtalk", emulator.app) as url:
        yield url, tokens


@pytest.fixture
async def client(dingtalk):
    url, _ = dingtalk
    async with httpx.AsyncClient(base_url=url) as control:
        await control.post("/emulator/reset")
    client = DingTalkClient(url, timeout_seconds=5)
    yield client
    await client.aclose()


def user_token(tokens: CredentialRegistry, subject: str = "alice") -> str:
    token, _ = tokens.issue(subject, ttl_s=600, provider="dingtalk")
    return token


async def document(url: str, doc_key: str) -> dict:
    async with httpx.AsyncClient(base_url=url) as control:
        response = await control.get(f"/emulator/documents/{doc_key}")
        response.raise_for_status()
        return response.json()


async def fail_next(url: str, count: int, kind: str = "error", status: int = 503) -> None:
    async with httpx.AsyncClient(base_url=url) as control:
        await control.post("/emulator/faults", json={"fail_next": count, "fail_kind": kind, "fail_status": status})


async def test_overwrite_replaces_the_document_in_one_call(dingtalk, client):
    url, tokens = dingtalk
    await client.overwrite_document("docA1", "# Helloworld", access_token=user_token(tokens))
    stored = await document(url, "docA1")
    assert (stored["content"], stored["dataType"], stored["writtenBy"]) == ("# Helloworld", "markdown", "alice")


async def test_rejected_token_is_a_typed_error_without_the_token(dingtalk, client):
    _, tokens = dingtalk
    token = user_token(tokens)
    tokens.revoke_subject("alice")
    with pytest.raises(DingTalkError) as caught:
        await client.overwrite_document("docA2", "x", access_token=token)
    error = caught.value
    # DingTalk answers a dead token with HTTP 400 InvalidAuthentication, not 401 (docs/services.md, DingTalk).
    assert (error.status, error.code, error.token_rejected) == (400, "InvalidAuthentication", True)
    assert error.request_id
    text = f"{error} {error!r} {_describe_failure(error)}"
    assert token not in text and error.request_id in _describe_failure(error)


async def test_throttling_is_dingtalk_s_403_qps_limit(dingtalk, client):
    url, tokens = dingtalk
    await fail_next(url, 1, kind="throttle")
    with pytest.raises(DingTalkError) as caught:
        await client.overwrite_document("docA3", "x", access_token=user_token(tokens))
    error = caught.value
    assert (error.status, error.code, error.throttled, error.token_rejected) == (
        403, "Forbidden.AccessDenied.QpsLimitForApi", True, False)
    assert "busy" in _describe_failure(error) and "Try again later" in _describe_failure(error)


async def test_a_throttled_write_backs_off_and_succeeds_within_the_budget(dingtalk, client):
    url, tokens = dingtalk
    await fail_next(url, 2, kind="throttle")
    source = TokenSource(tokens)
    await _write_with_reauthorization(source, client, "docA4", "after throttling")
    assert (await document(url, "docA4"))["content"] == "after throttling"
    assert source.calls == [False]  # no new authorization: throttling is not about the user's token


async def test_throttling_beyond_the_budget_gives_up_without_a_link(dingtalk, client, monkeypatch):
    url, tokens = dingtalk
    monkeypatch.setattr("tools.dingtalk.THROTTLE_BUDGET_SECONDS", 1.0)
    await fail_next(url, 10, kind="throttle")
    source = TokenSource(tokens)
    with pytest.raises(DingTalkError) as caught:
        await _write_with_reauthorization(source, client, "docA5", "x")
    await fail_next(url, 0)
    assert caught.value.throttled and source.calls == [False]


class TokenSource:
    """Stands in for identity's vault lookups: hands out registry tokens and records forced re-authorizations."""

    def __init__(self, tokens: CredentialRegistry, first: str | None = None) -> None:
        self.tokens, self.first, self.calls = tokens, first, []

    async def __call__(self, force: bool) -> str:
        self.calls.append(force)
        if not force and self.first is not None:
            return self.first
        return user_token(self.tokens, "bob")


async def test_one_transient_failure_is_retried(dingtalk, client):
    url, tokens = dingtalk
    await fail_next(url, 1, status=503)
    await _write_with_reauthorization(TokenSource(tokens), client, "docB1", "after a 503")
    assert (await document(url, "docB1"))["content"] == "after a 503"


async def test_two_transient_failures_give_up_with_the_server_error(dingtalk, client):
    url, tokens = dingtalk
    await fail_next(url, 2, status=502)
    with pytest.raises(DingTalkError) as caught:
        await _write_with_reauthorization(TokenSource(tokens), client, "docB2", "x")
    assert caught.value.status == 502 and "server error" in _describe_failure(caught.value)


async def test_rejected_token_triggers_exactly_one_forced_reauthorization(dingtalk, client):
    url, tokens = dingtalk
    stale = user_token(tokens, "carol")
    tokens.revoke_subject("carol")
    source = TokenSource(tokens, first=stale)
    await _write_with_reauthorization(source, client, "docB3", "re-authorized")
    assert source.calls == [False, True]
    assert (await document(url, "docB3"))["content"] == "re-authorized"


async def test_still_rejected_after_reauthorization_stops(dingtalk, client):
    _, tokens = dingtalk
    stale = user_token(tokens, "dave")
    tokens.revoke_subject("dave")

    async def always_stale(force: bool) -> str:
        return stale

    with pytest.raises(DingTalkError) as caught:
        await _write_with_reauthorization(always_stale, client, "docB4", "x")
    assert caught.value.status == 400 and caught.value.token_rejected


@pytest.mark.parametrize("document_id", ["../secret", "a/b", "a b", "doc?x=1", "", "x" * 65, "文档"])
def test_document_ids_must_be_path_safe_dingtalk_ids(document_id):
    with pytest.raises(ValidationError) as caught:
        WriteDocumentArgs(document_id=document_id, content="Helloworld")
    message = describe_validation_error(caught.value)
    assert message.startswith("Invalid tool arguments") and "document_id" in message


def test_content_is_bounded_and_not_echoed_back():
    too_long = "y" * (MAX_CONTENT_CHARS + 1)
    with pytest.raises(ValidationError) as caught:
        WriteDocumentArgs(document_id="doc1", content=too_long)
    message = describe_validation_error(caught.value)
    assert "content" in message and too_long not in message and len(message) < 300
    assert WriteDocumentArgs(document_id="Z90D4da_-x", content="y" * MAX_CONTENT_CHARS).content


async def test_an_app_without_the_write_permission_is_an_operator_message_not_a_link(dingtalk, client):
    url, tokens = dingtalk
    narrow, _ = tokens.issue("erin", ttl_s=600, provider="dingtalk", permissions=[])
    source = TokenSource(tokens, first=narrow)
    with pytest.raises(DingTalkError) as caught:
        await _write_with_reauthorization(source, client, "docB5", "not allowed")
    assert source.calls == [False]  # a new user authorization cannot grant the app a permission
    message = _describe_failure(caught.value)
    assert "Document.Document.Write" in message and "developer console" in message


def test_other_refusals_do_not_ask_the_user_to_authorize_again():
    quota = DingTalkError(403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "R1")
    assert not quota.token_rejected and not quota.transient and not quota.throttled
    assert not DingTalkError(403, "Forbidden.AccessDenied.IpNotInWhiteList", "R2").token_rejected
    assert not DingTalkError(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "R3").token_rejected
    assert DingTalkError(401, "Unauthorized", "R4").token_rejected
    assert not DingTalkError(400, "InvalidParameter.Content", "R5").token_rejected
    assert _describe_failure(quota) == ("DingTalk denied access; the document was not written. "
                                        "(code: Forbidden.AccessDenied.ApiCountLimitForOrg, requestid: R1)")
