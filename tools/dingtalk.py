"""DingTalk documents, written with the signed-in user's own DingTalk authorization, and DingTalk's answers as
short sentences the model can relay (`dingtalk_failure`, shared by every DingTalk tool).

`@tool(OAuth2(DINGTALK, ...))` (tools/tool.py) brings the user's token, the consent link and the
re-authorization; this module only knows how to call DingTalk with the token. The token never leaves the call:
not in a return value, an exception message or a log line.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field

from tools.tool import OAuth2, OAuth2Provider, ToolFailed, UserSession, tool

log = logging.getLogger(__name__)

DINGTALK = OAuth2Provider(env_prefix="DINGTALK", label="DingTalk", api_base="https://api.dingtalk.com")
# DingTalk's OAuth2 authorize page asks for these (docs/services.md, DingTalk).
SCOPES = ("openid", "corpid")
PURPOSE = "Write to DingTalk document"
MAX_CONTENT_CHARS = 50_000  # DingTalk's cap for document content
DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # DingTalk docKeys/dentryUuids: path-safe by construction
MAX_RETRY_AFTER_SECONDS = 2.0  # wait this long at most before the single retry of a 5xx
DEFAULT_RETRY_DELAY_SECONDS = 0.5
THROTTLE_BUDGET_SECONDS = 8.0  # a throttled write is retried with back-off for this long, then given up
# DingTalk's codes (docs/services.md, DingTalk): a dead user token is HTTP 400 InvalidAuthentication (401 is
# accepted too); throttling is HTTP 403 Forbidden.AccessDenied.QpsLimitFor*; a missing app permission is 403
# Forbidden.AccessDenied.AccessTokenPermissionDenied: the app lacks a permission, or gained it after the user
# consented; only a consent anew with prompt=consent can tell.
DEAD_TOKEN_CODE = "InvalidAuthentication"
THROTTLE_MARKER = "QpsLimit"
APP_PERMISSION_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
WRITE_CONSEQUENCE = "the document was not written"
# Not DingTalk's API answering: a 2xx without its `{"data": {...}}` body, or a page instead of a JSON error
# (an IP-level rate limit answers so, docs/services.md). What the call did cannot be known.
UNEXPECTED_RESPONSE = "UnexpectedResponse"


@dataclass(eq=False)
class DingTalkError(Exception):
    """DingTalk refused a call. Carries only what is safe to show: status, DingTalk code, request id."""

    status: int
    code: str
    request_id: str
    message: str = ""
    retry_after: float | None = None
    required_permissions: tuple[str, ...] = ()  # a 403 AccessTokenPermissionDenied names them

    def __str__(self) -> str:
        return f"DingTalk HTTP {self.status} {self.code} (requestid {self.request_id or 'n/a'})"

    @property
    def token_rejected(self) -> bool:
        """The user's token is invalid, expired or revoked: a new authorization fixes it. No 403 is about the
        user's token (quotas, throttling, the app's permissions, IP allow-lists), so none shows a link."""
        return self.status == 401 or (self.status == 400 and self.code == DEAD_TOKEN_CODE)

    @property
    def consent_outdated(self) -> bool:
        """The token lacks a permission: the app lacks it, or gained it after the user consented (the user's
        consent is a snapshot). One consent anew with prompt=consent tells the two apart
        (docs/services.md)."""
        return self.status == 403 and self.code == APP_PERMISSION_DENIED

    @property
    def throttled(self) -> bool:
        return self.status == 429 or (self.status == 403 and THROTTLE_MARKER in self.code)

    @property
    def transient(self) -> bool:
        return self.status >= 500


async def overwrite_document(user: UserSession, document_id: str, markdown: str) -> None:
    """Replace the whole document with `markdown` in one call (so nothing is ever half-written)."""
    path = f"/v2.0/doc/me/suites/documents/{quote(document_id, safe='')}/overwriteContent"
    response = await user.http.post(path, json={"dataType": "markdown", "content": markdown},
                                    headers={"x-acs-dingtalk-access-token": user.access_token})
    if not response.is_success:
        raise _error_from(response, user.access_token)
    if not isinstance(_json_object(response).get("data"), dict):
        raise _unexpected(response)


def dingtalk_failure(response: httpx.Response, access_token: str, *,
                     consequence: str = "nothing was done") -> ToolFailed:
    """DingTalk's refusal as the tool's failure: a dead token is `credential_rejected` (one new
    authorization), anything else a sentence naming `consequence` ("the document was not written")."""
    error = _error_from(response, access_token)
    if not error.token_rejected:
        log.warning("DingTalk %s failed: %s", response.request.url.path, error)
    return ToolFailed(_describe_failure(error, consequence), _failure_code(error),
                      credential_rejected=error.token_rejected, consent_outdated=error.consent_outdated)


def _error_from(response: httpx.Response, access_token: str) -> DingTalkError:
    """Read DingTalk's error body (`code`, `requestid`, `message`), scrubbing the token if it echoes it."""
    body = _json_object(response)
    if not body and response.status_code < 500:
        return _unexpected(response)  # a page, not the API: retrying it or asking for consent cannot help
    message = str(body.get("message") or "").replace(access_token, "[redacted]")[:200]
    return DingTalkError(
        status=response.status_code,
        code=str(body.get("code") or body.get("errcode") or f"HTTP{response.status_code}"),
        request_id=str(body.get("requestid") or body.get("requestId")
                       or response.headers.get("x-acs-request-id") or ""),
        message=message,
        retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
        required_permissions=_required_permissions(body.get("accessdenieddetail")),
    )


def _json_object(response: httpx.Response) -> dict:
    """The response's JSON object, or {} for anything else (a page, a list, no body)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _unexpected(response: httpx.Response) -> DingTalkError:
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return DingTalkError(status=response.status_code, code=UNEXPECTED_RESPONSE,
                         request_id=response.headers.get("x-acs-request-id", ""),
                         message=f"not DingTalk's API answer ({kind})")


def _required_permissions(detail: object) -> tuple[str, ...]:
    scopes = detail.get("requiredScopes") if isinstance(detail, dict) else None
    return tuple(str(scope) for scope in scopes) if isinstance(scopes, list) else ()


def _retry_after_seconds(raw: str | None) -> float | None:
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: treat as "long", so no retry


class WriteDocumentArgs(BaseModel):
    """Arguments of write_dingtalk_document, checked before any call is made."""

    document_id: str = Field(
        pattern=DOCUMENT_ID_PATTERN,
        description="The DingTalk document ID (docKey): letters, digits, '-' and '_' only.")
    content: str = Field(
        min_length=1, max_length=MAX_CONTENT_CHARS,
        description=f"The new content of the whole document, in Markdown (at most {MAX_CONTENT_CHARS} "
                    "characters).")


@tool(OAuth2(DINGTALK, SCOPES, purpose=PURPOSE), args_schema=WriteDocumentArgs)
async def write_dingtalk_document(user: UserSession, document_id: str, content: str) -> str:
    """Overwrite a DingTalk document with Markdown content, on behalf of the signed-in user.

    Use this when the user asks to write, put or save text into a DingTalk document and gives its
    document ID. The whole document is replaced by `content`.
    """
    try:
        await _write_with_retries(user, document_id, content)
    except DingTalkError as error:
        if not error.token_rejected:
            log.warning("DingTalk overwriteContent failed: %s", error)
        raise ToolFailed(_describe_failure(error, WRITE_CONSEQUENCE), _failure_code(error),
                         credential_rejected=error.token_rejected,
                         consent_outdated=error.consent_outdated) from None
    return f"Wrote {len(content)} characters to DingTalk document {document_id}."


async def _write_with_retries(user: UserSession, document_id: str, content: str) -> None:
    """Throttling is retried with back-off within THROTTLE_BUDGET_SECONDS, a 5xx once after a short wait:
    overwriting is idempotent."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + THROTTLE_BUDGET_SECONDS
    backoff = DEFAULT_RETRY_DELAY_SECONDS
    server_error_retried = False
    while True:
        try:
            await overwrite_document(user, document_id, content)
            return
        except DingTalkError as error:
            if error.throttled:
                delay = max(backoff, error.retry_after or 0.0)
                if loop.time() + delay > give_up_at:
                    raise
                backoff *= 2
            elif error.transient and not server_error_retried:
                delay = DEFAULT_RETRY_DELAY_SECONDS if error.retry_after is None else error.retry_after
                if delay > MAX_RETRY_AFTER_SECONDS:
                    raise
                server_error_retried = True
            else:
                raise
            log.info("DingTalk answered %s; retrying in %.1f s", error.code, delay)
            await asyncio.sleep(delay)


def _failure_code(error: DingTalkError) -> str:
    if error.code == UNEXPECTED_RESPONSE:
        return "dingtalk_unexpected_response"
    if error.throttled:
        return "dingtalk_throttled"
    if error.code == APP_PERMISSION_DENIED:
        return "dingtalk_app_permission_missing"
    return "dingtalk_unavailable" if error.status >= 500 else "dingtalk_refused"


def _describe_failure(error: DingTalkError, consequence: str = "") -> str:
    """One sentence for the model: what went wrong and what it means (`consequence`, default: the document was
    not written), plus DingTalk's code and request id for support."""
    consequence = consequence or WRITE_CONSEQUENCE
    if error.code == UNEXPECTED_RESPONSE:
        what = (f"DingTalk answered with something other than its API (HTTP {error.status}, "
                f"{error.message}), "
                "so whether the call took effect is unknown; check before asking again. DingTalk answers so "
                "while it limits requests from this address (for about 5 minutes).")
        return f"{what} (requestid: {error.request_id or 'n/a'})"
    if error.throttled:
        what = f"DingTalk is busy (rate-limited) right now; {consequence}. Try again later."
    elif error.status >= 500:
        what = f"DingTalk had a server error; {consequence}. Try again later."
    elif error.code == APP_PERMISSION_DENIED:
        missing = ", ".join(error.required_permissions)
        lacks = f"the permission {missing}" if missing else "a permission this call needs"
        what = (f"The DingTalk app behind this agent lacks {lacks}; {consequence}. An operator "
                "must grant it in the DingTalk developer console (no new user authorization can fix this).")
    elif error.status == 403:
        what = f"DingTalk denied access; {consequence}."
    elif error.status == 404:
        what = "DingTalk could not find that document; check the document ID."
    else:
        what = f"DingTalk rejected the request; {consequence}."
    detail = f" DingTalk said: {error.message}" if error.message else ""
    return f"{what}{detail} (code: {error.code}, requestid: {error.request_id or 'n/a'})"
