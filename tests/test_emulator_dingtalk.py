"""The DingTalk emulator driven with httpx, the product's DingTalk client library, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from emulators._server import serving
from emulators.dingtalk import MAX_CONTENT_CHARS, DingTalkEmulator
from emulators.registry import CredentialRegistry

PROVIDER = "dingtalk-provider"
Http = httpx.AsyncClient
Tokens = CredentialRegistry


@pytest.fixture(scope="module")
def dingtalk() -> Iterator[tuple[DingTalkEmulator, str]]:
    emulator = DingTalkEmulator(CredentialRegistry("dt-"))
    with serving("dingtalk", emulator.app) as url:
        yield emulator, url


@pytest.fixture
async def http(dingtalk: tuple[DingTalkEmulator, str]) -> AsyncIterator[httpx.AsyncClient]:
    emulator, url = dingtalk
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        await client.post("/emulator/reset")
        yield client


@pytest.fixture
def tokens(dingtalk: tuple[DingTalkEmulator, str]) -> CredentialRegistry:
    return dingtalk[0].tokens


def user_token(tokens: Tokens, subject: str = "alice", **details) -> str:
    """What the Agent Identity emulator hands the agent after the user's consent."""
    details.setdefault("provider", PROVIDER)
    token, _ = tokens.issue(subject, ttl_s=7200, scopes=["openid", "corpid"], **details)
    return token


async def overwrite(http: Http, doc_key: str, token: str | None, body: object) -> httpx.Response:
    headers = {"x-acs-dingtalk-access-token": token} if token is not None else {}
    path = f"/v2.0/doc/me/suites/documents/{doc_key}/overwriteContent"
    return await http.post(path, headers=headers, json=body)


def assert_dingtalk_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["requestid"] and body["message"]
    return body


async def test_overwrite_stores_the_document_for_its_author(http: Http,
                                                           tokens: Tokens) -> None:
    response = await overwrite(http, "Z90D4da", user_token(tokens, "alice"),
                               {"dataType": "markdown", "content": "Helloworld"})
    assert response.status_code == 200
    assert response.json() == {"data": {}}  # the SDK model's success body
    stored = (await http.get("/emulator/documents/Z90D4da")).json()
    assert stored["content"] == "Helloworld"
    assert stored["dataType"] == "markdown"
    assert stored["writtenBy"] == "alice"
    assert stored["writtenAt"]


async def test_overwrite_replaces_previous_content_and_defaults_to_markdown(http: Http,
                                                                          tokens: Tokens) -> None:
    token = user_token(tokens)
    await overwrite(http, "doc-replace", token, {"content": "first"})
    await overwrite(http, "doc-replace", token, {"content": "# second\n\n中文也可以"})
    stored = (await http.get("/emulator/documents/doc-replace")).json()
    assert (stored["content"], stored["dataType"]) == ("# second\n\n中文也可以", "markdown")


async def test_unknown_document_is_404_on_the_emulator_route(http: Http) -> None:
    assert (await http.get("/emulator/documents/never-written")).status_code == 404


@pytest.mark.parametrize("token", ["not-a-token", "dt-forged"])
async def test_unknown_token_is_invalid_authentication(http: Http, token: str) -> None:
    response = await overwrite(http, "doc1", token, {"dataType": "markdown", "content": "x"})
    assert_dingtalk_error(response, 400, "InvalidAuthentication")
    assert token not in response.text


async def test_missing_token_is_rejected(http: Http) -> None:
    response = await overwrite(http, "doc1", None, {"dataType": "markdown", "content": "x"})
    assert_dingtalk_error(response, 400, "AuthenticationFailed.MissingParameter")


async def test_token_without_provider_is_not_a_dingtalk_token(http: Http,
                                                             tokens: Tokens) -> None:
    token, _ = tokens.issue("alice", ttl_s=600)
    response = await overwrite(http, "doc1", token, {"content": "x"})
    assert_dingtalk_error(response, 400, "InvalidAuthentication")


async def test_expired_token_is_invalid_authentication(http: Http, tokens: Tokens) -> None:
    token = user_token(tokens)
    tokens.get(token).expires_at = 0.0
    response = await overwrite(http, "doc-exp", token, {"content": "x"})
    assert_dingtalk_error(response, 400, "InvalidAuthentication")
    assert (await http.get("/emulator/documents/doc-exp")).status_code == 404


async def test_expire_tokens_route_expires_every_token(http: Http, tokens: Tokens) -> None:
    token = user_token(tokens)
    assert (await overwrite(http, "doc-ex2", token, {"content": "x"})).status_code == 200
    assert (await http.post("/emulator/expire-tokens")).status_code == 200
    response = await overwrite(http, "doc-ex2", token, {"content": "y"})
    assert_dingtalk_error(response, 400, "InvalidAuthentication")


async def test_revoke_invalidates_only_that_users_tokens(http: Http, tokens: Tokens) -> None:
    alice, alice_again = user_token(tokens, "rev-alice"), user_token(tokens, "rev-alice")
    bob = user_token(tokens, "rev-bob")
    revoked = await http.post("/emulator/revoke", json={"subject": "rev-alice"})
    assert revoked.json() == {"revoked": 2}
    for token in (alice, alice_again):
        response = await overwrite(http, "doc-rev", token, {"content": "x"})
        assert_dingtalk_error(response, 400, "InvalidAuthentication")
    assert (await overwrite(http, "doc-rev", bob, {"content": "bob"})).status_code == 200
    fresh = user_token(tokens, "rev-alice")  # a new authorization works again
    assert (await overwrite(http, "doc-rev", fresh, {"content": "alice"})).status_code == 200


async def test_revoke_needs_a_subject(http: Http) -> None:
    assert_dingtalk_error(await http.post("/emulator/revoke", json={}), 400, "MissingParameter")


async def test_missing_app_permission_is_403_with_required_scopes(http: Http,
                                                                 tokens: Tokens) -> None:
    token = user_token(tokens, permissions=["Contact.User.Read"])
    body = assert_dingtalk_error(await overwrite(http, "doc1", token, {"content": "x"}), 403,
                                 "Forbidden.AccessDenied.AccessTokenPermissionDenied")
    assert body["accessdenieddetail"] == {"requiredScopes": ["Document.Document.Write"]}
    allowed = user_token(tokens, permissions=["Document.Document.Write"])
    assert (await overwrite(http, "doc1", allowed, {"content": "x"})).status_code == 200


async def test_content_limit_is_fifty_thousand_characters(http: Http, tokens: Tokens) -> None:
    token = user_token(tokens)
    at_limit = "字" * MAX_CONTENT_CHARS  # characters, not bytes
    assert (await overwrite(http, "doc-big", token, {"content": at_limit})).status_code == 200
    response = await overwrite(http, "doc-big", token, {"content": at_limit + "x"})
    assert_dingtalk_error(response, 400, "InvalidParameter.Content.TooLong")
    assert (await http.get("/emulator/documents/doc-big")).json()["content"] == at_limit


@pytest.mark.parametrize(("body", "code"), [
    ({"dataType": "markdown"}, "MissingParameter.Content"),
    ({"content": 42}, "InvalidParameter.Content"),
    ({"content": "x", "dataType": "html"}, "InvalidParameter.DataType"),
    (["content", "x"], "InvalidParameter"),
])
async def test_bad_bodies_are_400(http: Http, tokens: Tokens, body: object,
                                  code: str) -> None:
    assert_dingtalk_error(await overwrite(http, "doc1", user_token(tokens), body), 400, code)


async def test_body_that_is_not_json_is_400(http: Http, tokens: Tokens) -> None:
    response = await http.post("/v2.0/doc/me/suites/documents/doc1/overwriteContent", content=b"{oops",
                               headers={"x-acs-dingtalk-access-token": user_token(tokens),
                                        "content-type": "application/json"})
    assert_dingtalk_error(response, 400, "InvalidParameter")


@pytest.mark.parametrize("doc_key", ["bad%20key", "a.b", "x" * 65, "%E6%96%87%E6%A1%A3"])
async def test_bad_doc_key_is_400(http: Http, tokens: Tokens, doc_key: str) -> None:
    response = await overwrite(http, doc_key, user_token(tokens), {"content": "x"})
    assert_dingtalk_error(response, 400, "InvalidParameter.DocKey")


async def test_throttle_fault_looks_like_dingtalk_throttling(http: Http,
                                                            tokens: Tokens) -> None:
    await http.post("/emulator/faults", json={"fail_next": 1, "fail_kind": "throttle"})
    token = user_token(tokens)
    response = await overwrite(http, "doc-throttle", token, {"content": "x"})
    assert_dingtalk_error(response, 403, "Forbidden.AccessDenied.QpsLimitForApi")
    assert response.headers["retry-after"] == "1"
    assert (await overwrite(http, "doc-throttle", token, {"content": "x"})).status_code == 200


async def test_server_error_fault_then_recovery(http: Http, tokens: Tokens) -> None:
    await http.post("/emulator/faults",
                    json={"fail_next": 2, "fail_status": 502, "match": "overwriteContent"})
    token = user_token(tokens)
    for _ in range(2):
        response = await overwrite(http, "doc-5xx", token, {"content": "x"})
        assert_dingtalk_error(response, 502, "ServiceUnavailable")
    # control routes are never faulted
    assert (await http.get("/emulator/documents/doc-5xx")).status_code == 404
    assert (await overwrite(http, "doc-5xx", token, {"content": "x"})).status_code == 200
    calls = (await http.get("/emulator/calls")).json()
    assert calls["POST /v2.0/doc/me/suites/documents/doc-5xx/overwriteContent"] == 3


async def test_latency_fault_delays_the_answer_past_a_client_timeout(http: Http,
                                                                    tokens: Tokens) -> None:
    await http.post("/emulator/faults", json={"latency_ms": 3000})
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/v2.0/doc/me/suites/documents/doc-slow/overwriteContent", json={"content": "x"},
                        headers={"x-acs-dingtalk-access-token": user_token(tokens)}, timeout=0.2)


async def test_timeout_fault_answers_504_after_the_timeout(http: Http, tokens: Tokens) -> None:
    await http.post("/emulator/faults", json={"fail_next": 1, "fail_kind": "timeout", "timeout_s": 0.05})
    response = await overwrite(http, "doc-timeout", user_token(tokens), {"content": "x"})
    assert_dingtalk_error(response, 504, "RequestTimeout")


async def test_my_profile_needs_a_live_token_and_the_app_permission(http: Http, tokens: Tokens) -> None:
    me = "/v1.0/contact/users/me"
    profile = await http.get(me, headers={"x-acs-dingtalk-access-token": user_token(tokens, "ivy")})
    assert profile.status_code == 200 and profile.json()["nick"] == "ivy"
    assert {"openId", "unionId"} <= set(profile.json()) and profile.headers["x-acs-request-id"]
    assert_dingtalk_error(await http.get(me), 400, "AuthenticationFailed.MissingParameter")
    assert_dingtalk_error(await http.get(me, headers={"x-acs-dingtalk-access-token": "dt-made-up"}), 400,
                          "InvalidAuthentication")
    dead = user_token(tokens, "jay")
    tokens.revoke_subject("jay")
    assert_dingtalk_error(await http.get(me, headers={"x-acs-dingtalk-access-token": dead}), 400,
                          "InvalidAuthentication")
    narrow = user_token(tokens, "kim", permissions=["Document.Document.Write"])
    denied = assert_dingtalk_error(await http.get(me, headers={"x-acs-dingtalk-access-token": narrow}), 403,
                                   "Forbidden.AccessDenied.AccessTokenPermissionDenied")
    assert denied["accessdenieddetail"] == {"requiredScopes": ["Contact.User.Read"]}
