"""The DingTalk tools' own rules (writing a document, reading the user's profile), against the DingTalk
emulator over real HTTP.

Each tool is called directly with a `UserSession`, as the toolbox calls it; what the toolbox adds (the token,
consent, one re-authorization) is tested with the real identity service in test_tools_with_identity.py and
test_oauth2_tool.py."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from emulators._server import serving
from emulators.dingtalk import DingTalkEmulator
from emulators.registry import CredentialRegistry
from tools.dingtalk import (MAX_CONTENT_CHARS, DingTalkError, WriteDocumentArgs, _describe_failure,
                            overwrite_document, write_dingtalk_document)
from tools.dingtalk_profile import read_dingtalk_profile
from tools.tool import ToolFailed, UserSession
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
    """The HTTP client the decorator would hand the tool for DingTalk (base URL: the API)."""
    url, _ = dingtalk
    async with httpx.AsyncClient(base_url=url) as control:
        await control.post("/emulator/reset")
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        yield client


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
    await overwrite_document(UserSession(user_token(tokens), client), "docA1", "# Helloworld")
    stored = await document(url, "docA1")
    assert (stored["content"], stored["dataType"], stored["writtenBy"]) == ("# Helloworld", "markdown", "alice")


async def test_rejected_token_is_a_typed_error_without_the_token(dingtalk, client):
    _, tokens = dingtalk
    token = user_token(tokens)
    tokens.revoke_subject("alice")
    with pytest.raises(DingTalkError) as caught:
        await overwrite_document(UserSession(token, client), "docA2", "x")
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
        await overwrite_document(UserSession(user_token(tokens), client), "docA3", "x")
    error = caught.value
    assert (error.status, error.code, error.throttled, error.token_rejected) == (
        403, "Forbidden.AccessDenied.QpsLimitForApi", True, False)
    assert "busy" in _describe_failure(error) and "Try again later" in _describe_failure(error)


async def test_a_throttled_write_backs_off_and_succeeds_within_the_budget(dingtalk, client):
    url, tokens = dingtalk
    await fail_next(url, 2, kind="throttle")
    answer = await write_dingtalk_document(UserSession(user_token(tokens), client), "docA4", "after throttling")
    assert answer == "Wrote 16 characters to DingTalk document docA4."
    assert (await document(url, "docA4"))["content"] == "after throttling"


async def test_throttling_beyond_the_budget_gives_up_without_asking_for_a_new_authorization(dingtalk, client,
                                                                                             monkeypatch):
    url, tokens = dingtalk
    monkeypatch.setattr("tools.dingtalk.THROTTLE_BUDGET_SECONDS", 1.0)
    await fail_next(url, 10, kind="throttle")
    with pytest.raises(ToolFailed) as caught:  # not credential_rejected: throttling is not about the user's token
        await write_dingtalk_document(UserSession(user_token(tokens), client), "docA5", "x")
    await fail_next(url, 0)
    assert caught.value.code == "dingtalk_throttled" and "busy" in caught.value.message


async def test_one_transient_failure_is_retried(dingtalk, client):
    url, tokens = dingtalk
    await fail_next(url, 1, status=503)
    await write_dingtalk_document(UserSession(user_token(tokens), client), "docB1", "after a 503")
    assert (await document(url, "docB1"))["content"] == "after a 503"


async def test_two_transient_failures_give_up_with_the_server_error(dingtalk, client):
    url, tokens = dingtalk
    await fail_next(url, 2, status=502)
    with pytest.raises(ToolFailed) as caught:
        await write_dingtalk_document(UserSession(user_token(tokens), client), "docB2", "x")
    assert caught.value.code == "dingtalk_unavailable" and "server error" in caught.value.message


async def test_a_rejected_token_asks_for_a_new_authorization_without_the_token(dingtalk, client):
    _, tokens = dingtalk
    stale = user_token(tokens, "dave")
    tokens.revoke_subject("dave")
    with pytest.raises(ToolFailed) as caught:
        await write_dingtalk_document(UserSession(stale, client), "docB4", "x")
    assert caught.value.credential_rejected
    assert "InvalidAuthentication" in caught.value.message and stale not in caught.value.message


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
    _, tokens = dingtalk
    narrow, _ = tokens.issue("erin", ttl_s=600, provider="dingtalk", permissions=[])
    with pytest.raises(ToolFailed) as caught:  # a new user authorization cannot grant the app a permission
        await write_dingtalk_document(UserSession(narrow, client), "docB5", "not allowed")
    assert caught.value.code == "dingtalk_app_permission_missing"
    assert "Document.Document.Write" in caught.value.message and "developer console" in caught.value.message


def test_other_refusals_do_not_ask_the_user_to_authorize_again():
    quota = DingTalkError(403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "R1")
    assert not quota.token_rejected and not quota.transient and not quota.throttled
    assert not DingTalkError(403, "Forbidden.AccessDenied.IpNotInWhiteList", "R2").token_rejected
    assert not DingTalkError(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", "R3").token_rejected
    assert DingTalkError(401, "Unauthorized", "R4").token_rejected
    assert not DingTalkError(400, "InvalidParameter.Content", "R5").token_rejected
    assert _describe_failure(quota) == ("DingTalk denied access; the document was not written. "
                                        "(code: Forbidden.AccessDenied.ApiCountLimitForOrg, requestid: R1)")


@pytest.mark.parametrize("status", [200, 403])
async def test_a_page_instead_of_the_api_is_an_unknown_outcome_never_a_success(dingtalk, client, status):
    """An IP-level rate limit (or a gateway) answers with an HTML page: a 2xx without DingTalk's `data` object
    is not a write we can count, and a 4xx page is not an error DingTalk's API gave. Neither is retried."""
    url, tokens = dingtalk
    token = user_token(tokens)
    await fail_next(url, 2, kind="page", status=status)
    with pytest.raises(ToolFailed) as failed:
        await write_dingtalk_document(UserSession(token, client), "docPage", "text")

    assert failed.value.code == "dingtalk_unexpected_response"
    assert "whether the call took effect is unknown" in str(failed.value)
    async with httpx.AsyncClient(base_url=url) as control:
        faults = (await control.get("/emulator/faults")).json()
    assert faults["fail_next"] == 1  # one call, no retry


async def test_the_profile_tool_tells_who_the_user_is_on_dingtalk(dingtalk, client):
    _, tokens = dingtalk
    answer = await read_dingtalk_profile(UserSession(user_token(tokens, "frank"), client))
    assert answer.startswith("On DingTalk you are frank (unionId ") and "openId " in answer


async def test_the_profile_tool_asks_for_a_new_authorization_when_the_token_is_dead(dingtalk, client):
    _, tokens = dingtalk
    stale = user_token(tokens, "gina")
    tokens.revoke_subject("gina")
    with pytest.raises(ToolFailed) as caught:
        await read_dingtalk_profile(UserSession(stale, client))
    assert caught.value.credential_rejected and caught.value.code == "dingtalk_refused"
    assert "the profile was not read" in caught.value.message and stale not in caught.value.message


async def test_the_profile_tool_names_the_permission_the_app_lacks(dingtalk, client):
    _, tokens = dingtalk
    narrow, _ = tokens.issue("hugo", ttl_s=600, provider="dingtalk", permissions=["Document.Document.Write"])
    with pytest.raises(ToolFailed) as caught:
        await read_dingtalk_profile(UserSession(narrow, client))
    assert not caught.value.credential_rejected and caught.value.code == "dingtalk_app_permission_missing"
    assert "Contact.User.Read" in caught.value.message and "the profile was not read" in caught.value.message
