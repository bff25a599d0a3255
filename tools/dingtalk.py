"""DingTalk documents, written with the signed-in user's own DingTalk authorization.

The user's OAuth2 token comes from identity/ (Agent Identity's token vault); this module only knows how to
call DingTalk with it and how to turn DingTalk's answers into short sentences the model can relay. The
token never leaves this module: not in a return value, an exception message or a log line.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from identity.errors import AuthorizationPending, IdentityError, consent_sentence
from tools.outcome import Outcome, failed, succeeded
from tools.settings import ToolSettings
from tools.validation import describe_validation_error

if TYPE_CHECKING:
    from identity.service import AgentIdentity

log = logging.getLogger(__name__)

PURPOSE = "Write to DingTalk document"
MAX_CONTENT_CHARS = 50_000  # DingTalk's cap for document content
DOCUMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # DingTalk docKeys/dentryUuids: path-safe by construction
MAX_RETRY_AFTER_SECONDS = 2.0  # wait this long at most before the single retry of a 5xx
DEFAULT_RETRY_DELAY_SECONDS = 0.5
THROTTLE_BUDGET_SECONDS = 8.0  # a throttled write is retried with back-off for this long, then given up
# DingTalk's codes (docs/services.md, DingTalk): a dead user token is HTTP 400 InvalidAuthentication (401 is
# accepted too); throttling is HTTP 403 Forbidden.AccessDenied.QpsLimitFor*; a missing app permission is 403
# Forbidden.AccessDenied.AccessTokenPermissionDenied, which no user authorization can fix.
DEAD_TOKEN_CODE = "InvalidAuthentication"
THROTTLE_MARKER = "QpsLimit"
APP_PERMISSION_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
WRITE_PERMISSION = "Document.Document.Write"


@dataclass(eq=False)
class DingTalkError(Exception):
    """DingTalk refused a call. Carries only what is safe to show: status, DingTalk code, request id."""

    status: int
    code: str
    request_id: str
    message: str = ""
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"DingTalk HTTP {self.status} {self.code} (requestid {self.request_id or 'n/a'})"

    @property
    def token_rejected(self) -> bool:
        """The user's token is invalid, expired or revoked: a new authorization fixes it. No 403 is about the
        user's token (quotas, throttling, the app's permissions, IP allow-lists), so none shows a link."""
        return self.status == 401 or (self.status == 400 and self.code == DEAD_TOKEN_CODE)

    @property
    def throttled(self) -> bool:
        return self.status == 429 or (self.status == 403 and THROTTLE_MARKER in self.code)

    @property
    def transient(self) -> bool:
        return self.status >= 500


class DingTalkClient:
    """A small async DingTalk client: one shared connection pool, bounded timeouts, typed errors.

    The pool opens on first use, inside the event loop that serves requests (an httpx client belongs to
    one loop); its owner (`tools.Toolbox`) closes it on that loop at shutdown.
    """

    def __init__(self, base_url: str, *, timeout_seconds: float = 10.0) -> None:
        self._base_url = base_url
        self._timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0))
        self._http: httpx.AsyncClient | None = None

    def _pool(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(base_url=self._base_url, timeout=self._timeout,
                                           limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                                           headers={"Accept": "application/json"})
        return self._http

    async def overwrite_document(self, document_id: str, markdown: str, *, access_token: str) -> None:
        """Replace the whole document with `markdown` in one call (so nothing is ever half-written)."""
        path = f"/v2.0/doc/me/suites/documents/{quote(document_id, safe='')}/overwriteContent"
        response = await self._pool().post(path, json={"dataType": "markdown", "content": markdown},
                                           headers={"x-acs-dingtalk-access-token": access_token})
        if response.is_success:
            return
        raise _error_from(response, access_token)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _error_from(response: httpx.Response, access_token: str) -> DingTalkError:
    """Read DingTalk's error body (`code`, `requestid`, `message`), scrubbing the token if it echoes it."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or "").replace(access_token, "[redacted]")[:200]
    return DingTalkError(
        status=response.status_code,
        code=str(body.get("code") or body.get("errcode") or f"HTTP{response.status_code}"),
        request_id=str(body.get("requestid") or body.get("requestId") or response.headers.get("x-acs-request-id")
                       or ""),
        message=message,
        retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
    )


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
        description=f"The new content of the whole document, in Markdown (at most {MAX_CONTENT_CHARS} characters).")


def make_write_document_tool(identity: AgentIdentity, settings: ToolSettings, client: DingTalkClient) -> BaseTool:
    """Build `write_dingtalk_document`, bound to this process's identity service and DingTalk client."""

    async def user_token(force: bool) -> str:
        return await identity.oauth2_token(provider=settings.dingtalk_provider, scopes=settings.dingtalk_scopes,
                                           purpose=PURPOSE, flow="USER_FEDERATION", force_authentication=force)

    async def write_dingtalk_document(document_id: str, content: str) -> Outcome:
        """Overwrite a DingTalk document with Markdown content, on behalf of the signed-in user.

        Use this when the user asks to write, put or save text into a DingTalk document and gives its
        document ID. The whole document is replaced by `content`. The first time, the user is shown a
        link to authorize access to their DingTalk documents; if this tool answers with such a link,
        pass the link on to the user exactly as given.
        """
        try:
            await _write_with_reauthorization(user_token, client, document_id, content)
        except AuthorizationPending as pending:
            return failed(consent_sentence(pending.purpose or PURPOSE, pending.url)
                          + "After authorizing, ask again and the document will be written.", pending.code)
        except IdentityError as error:
            return failed(error.safe_message, error.code)
        except DingTalkError as error:
            log.warning("DingTalk overwriteContent failed: %s", error)
            return failed(_describe_failure(error), _failure_code(error))
        except httpx.TimeoutException:
            return failed("DingTalk did not answer in time; the document may not have been written. Please try "
                          "again.", "dingtalk_timeout")
        except httpx.TransportError:
            return failed("DingTalk could not be reached; the document was not written. Please try again later.",
                          "dingtalk_unreachable")
        return succeeded(f"Wrote {len(content)} characters to DingTalk document {document_id}.")

    return StructuredTool.from_function(
        coroutine=write_dingtalk_document,
        name="write_dingtalk_document",
        description=inspect.getdoc(write_dingtalk_document),
        args_schema=WriteDocumentArgs,
        handle_validation_error=describe_validation_error,
        response_format="content_and_artifact",
    )


async def _write_with_reauthorization(user_token: Callable[[bool], Awaitable[str]], client: DingTalkClient,
                                      document_id: str, content: str) -> None:
    """Write once; if DingTalk rejects the token, authorize again (forced) and write once more.

    Throttling is retried with back-off within THROTTLE_BUDGET_SECONDS, a 5xx once after a short wait:
    overwriting is idempotent.
    """
    token = await user_token(False)
    try:
        await _write_with_retries(client, document_id, content, token)
    except DingTalkError as error:
        if not error.token_rejected:
            raise
        log.info("DingTalk rejected the user's token (%s); asking for a new authorization", error.code)
        token = await user_token(True)
        await _write_with_retries(client, document_id, content, token)


async def _write_with_retries(client: DingTalkClient, document_id: str, content: str,
                                          token: str) -> None:
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + THROTTLE_BUDGET_SECONDS
    backoff = DEFAULT_RETRY_DELAY_SECONDS
    server_error_retried = False
    while True:
        try:
            await client.overwrite_document(document_id, content, access_token=token)
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
    if error.throttled:
        return "dingtalk_throttled"
    if error.token_rejected:
        return "dingtalk_authorization_rejected"
    if error.code == APP_PERMISSION_DENIED:
        return "dingtalk_app_permission_missing"
    return "dingtalk_unavailable" if error.status >= 500 else "dingtalk_refused"


def _describe_failure(error: DingTalkError) -> str:
    """One sentence for the model: what went wrong, plus DingTalk's code and request id for support."""
    if error.throttled:
        what = "DingTalk is busy (rate-limited) right now; the document was not written. Try again later."
    elif error.status >= 500:
        what = "DingTalk had a server error; the document was not written. Try again later."
    elif error.token_rejected:
        what = "DingTalk refused the user's authorization even after it was renewed."
    elif error.code == APP_PERMISSION_DENIED:
        what = (f"The DingTalk app behind this agent lacks the permission {WRITE_PERMISSION}; the document was not "
                "written. An operator must grant it in the DingTalk developer console (no new user authorization "
                "can fix this).")
    elif error.status == 403:
        what = "DingTalk denied access; the document was not written."
    elif error.status == 404:
        what = "DingTalk could not find that document; check the document ID."
    else:
        what = "DingTalk rejected the request; the document was not written."
    detail = f" DingTalk said: {error.message}" if error.message else ""
    return f"{what}{detail} (code: {error.code}, requestid: {error.request_id or 'n/a'})"
