"""A local DingTalk open API: overwrite a document's content, and read the user's own profile, with a user access
token.

Only the calls the product makes are served, with DingTalk's wire format (docs/services.md, DingTalk):
`POST /v2.0/doc/me/suites/documents/{docKey}/overwriteContent`, header `x-acs-dingtalk-access-token`,
JSON `{"dataType":"markdown","content":"..."}`; `GET /v1.0/contact/users/me` with the same header, answering
`{"nick","avatarUrl","mobile","openId","unionId","email","stateCode"}` (app permission `Contact.User.Read`).
Tokens are accepted only if the Agent Identity emulator issued
them (the shared `CredentialRegistry`), recorded a `provider`, and they are neither expired nor revoked.

As DingTalk answers (public probe logs of api.dingtalk.com, the SDK's models, DingTalk's limit docs):
- an unknown, expired or revoked token: HTTP 400 `InvalidAuthentication` ("不合法的access_token"); a missing
  token header: HTTP 400 `AuthenticationFailed.MissingParameter`;
- throttling: HTTP 403 `Forbidden.AccessDenied.QpsLimitForApi` (the `throttle` fault), not 429;
- the app lacks the API permission: HTTP 403 `Forbidden.AccessDenied.AccessTokenPermissionDenied` with
  `accessdenieddetail` (given when the issuer recorded a `permissions` list without `Document.Document.Write`:
  DingTalk checks the app's permission, not the user token's scopes);
- success: `{"data": {...}}` (the SDK model `DocUpdateContentWithDelegatedPermissionResponseBody`).
Chosen where DingTalk does not say: the profile's `nick` is the token's subject, its ids are derived from it,
and `mobile`, `email` and `avatarUrl` are left out (DingTalk leaves out what the app may not read); the throttle answer's `Retry-After: 1` header (the shared fault
machinery adds it; DingTalk documents none, and the product works either way); the content of `data` is
empty; any well-formed docKey names a document (created on first write); other error codes follow the
`{"code","requestid","message"}` shape.

Emulator-only routes: `GET /emulator/documents/{docKey}` -> `{"content","dataType","writtenBy","writtenAt"}`
(404 if never written), `POST /emulator/revoke {"subject": sub}` -> `{"revoked": n}`.
`POST /emulator/expire-tokens` expires every token in the registry.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators._server import emulator_app
from emulators.registry import CredentialRegistry, Issued

MAX_CONTENT_CHARS = 50_000
WRITE_PERMISSION = "Document.Document.Write"
PROFILE_PERMISSION = "Contact.User.Read"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
DATA_TYPES = ("markdown",)
# docKey / dentryUuid values are short URL-safe ids (e.g. "Z90D4da"); anything else cannot be one.
DOC_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
THROTTLED = "Forbidden.AccessDenied.QpsLimitForApi"


@dataclass(frozen=True)
class Document:
    """A document's current content and who overwrote it last."""

    content: str
    data_type: str
    written_by: str
    written_at: str


class DingTalkEmulator:
    """DingTalk documents, writable with user tokens issued into `tokens` by the Agent Identity emulator."""

    def __init__(self, tokens: CredentialRegistry) -> None:
        self.tokens = tokens
        self.documents: dict[str, Document] = {}
        self.app = emulator_app("dingtalk", self._routes(), dingtalk_error,
                                on_expire_tokens=tokens.expire_all)

    def _routes(self) -> list[Route]:
        return [
            Route("/v2.0/doc/me/suites/documents/{docKey}/overwriteContent", self._overwrite_content,
                  methods=["POST"]),
            Route("/v1.0/contact/users/me", self._get_my_profile, methods=["GET"]),
            Route("/emulator/documents/{docKey}", self._get_document, methods=["GET"]),
            Route("/emulator/revoke", self._revoke, methods=["POST"]),
        ]

    def _authorized(self, request: Request, permission: str) -> Issued | Response:
        """The token's record, or DingTalk's refusal: no token, a dead one, or an app without `permission`."""
        token = request.headers.get(TOKEN_HEADER, "").strip()
        if not token:
            return dingtalk_error(400, "AuthenticationFailed.MissingParameter",
                                  f"{TOKEN_HEADER} is mandatory for this action.")
        record = self.tokens.get(token)
        if record is None or not record.valid or not record.details.get("provider"):
            # One answer for unknown, expired and revoked: DingTalk does not tell them apart either.
            return dingtalk_error(400, "InvalidAuthentication", "不合法的access_token")
        permissions = record.details.get("permissions")
        if permissions is not None and permission not in permissions:
            return dingtalk_error(403, "Forbidden.AccessDenied.AccessTokenPermissionDenied",
                                  f"没有调用该接口的权限，接口权限申请参考：{permission}",
                                  accessdenieddetail={"requiredScopes": [permission]})
        return record

    async def _get_my_profile(self, request: Request) -> Response:
        record = self._authorized(request, PROFILE_PERMISSION)
        if isinstance(record, Response):
            return record
        digest = hashlib.sha256(record.subject.encode()).hexdigest()
        return JSONResponse({"nick": record.subject, "openId": digest[:24], "unionId": digest[24:48],
                             "stateCode": "86"}, headers=_request_id_header())

    async def _overwrite_content(self, request: Request) -> Response:
        record = self._authorized(request, WRITE_PERMISSION)
        if isinstance(record, Response):
            return record
        doc_key = request.path_params["docKey"]
        if not DOC_KEY.match(doc_key):
            return dingtalk_error(400, "InvalidParameter.DocKey", "docKey is invalid.")
        body, problem = _parse_body(await request.body())
        if problem:
            return dingtalk_error(400, *problem)
        self.documents[doc_key] = Document(content=body["content"], data_type=body["dataType"],
                                           written_by=record.subject,
                                           written_at=datetime.now(UTC).isoformat(timespec="seconds"))
        return JSONResponse({"data": {}}, headers=_request_id_header())

    async def _get_document(self, request: Request) -> Response:
        document = self.documents.get(request.path_params["docKey"])
        if document is None:
            return dingtalk_error(404, "DocumentNotFound", "The document was never written.")
        return JSONResponse({"content": document.content, "dataType": document.data_type,
                             "writtenBy": document.written_by, "writtenAt": document.written_at})

    async def _revoke(self, request: Request) -> Response:
        try:
            subject = (await request.json())["subject"]
        except (ValueError, KeyError, TypeError):
            return dingtalk_error(400, "MissingParameter", 'Send {"subject": "<user>"}.')
        return JSONResponse({"revoked": self.tokens.revoke_subject(str(subject))})


def _parse_body(raw: bytes) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """The validated body with `dataType` defaulted, or a (code, message) problem."""
    try:
        body = json.loads(raw)
    except ValueError:
        return {}, ("InvalidParameter", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return {}, ("InvalidParameter", "The request body must be a JSON object.")
    content = body.get("content")
    if content is None:
        return {}, ("MissingParameter.Content", "content is mandatory for this action.")
    if not isinstance(content, str):
        return {}, ("InvalidParameter.Content", "content must be a string.")
    if len(content) > MAX_CONTENT_CHARS:
        return {}, ("InvalidParameter.Content.TooLong",
                    f"content exceeds the maximum length of {MAX_CONTENT_CHARS} characters.")
    data_type = body.get("dataType") or "markdown"
    if data_type not in DATA_TYPES:
        return {}, ("InvalidParameter.DataType", f"dataType {data_type!r} is not supported; use 'markdown'.")
    return {"content": content, "dataType": data_type}, None


def dingtalk_error(status: int, code: str, message: str, **extra: Any) -> Response:
    """DingTalk's error body; the request id also goes in a header for clients that log headers only.
    Injected faults arrive with generic codes: throttling becomes DingTalk's own 403."""
    if code == "Throttling":
        status, code, message = 403, THROTTLED, "请求被限流，请稍后重试"
    request_id = uuid.uuid4().hex.upper()
    body = {"code": code, "requestid": request_id, "message": message, **extra}
    return JSONResponse(body, status_code=status, headers={"x-acs-request-id": request_id})


def _request_id_header() -> dict[str, str]:
    return {"x-acs-request-id": uuid.uuid4().hex.upper()}
