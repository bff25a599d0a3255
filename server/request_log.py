"""One JSON log line per request, written after the last byte (streams included), and a last line of defence
for anything unexpected (a 500 in the OpenAI shape). The routes' own errors: server/failures.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError, describe
from server.logs import capped

MAX_TOOLS_LOGGED = 20

log = logging.getLogger("app")
request_log = logging.getLogger("app.request")


@dataclass
class RequestLog:
    """Filled in while the request runs; written once as a JSON line when the response is over."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    first_byte: float | None = None
    status: int | None = None
    session_id: str | None = None
    sub: str | None = None
    model: str | None = None
    stream: bool | None = None
    tokens: dict[str, int] | None = None
    tools: list[dict[str, Any]] | None = None  # each tool call's outcome: {"tool", "ok", "code"?}
    error: str | None = None

    def record_events(self, events: list[dict[str, Any]]) -> None:
        """The run's tool outcomes, from its `agent_event`s."""
        finished = [e for e in events if e.get("type") == "tool_finished"]
        self.tools = [{k: e[k] for k in ("tool", "ok", "code") if k in e}
                      for e in finished[:MAX_TOOLS_LOGGED]] or None

    def fields(self) -> dict[str, Any]:
        """The log line's fields; every caller-supplied string is capped (a 1 MiB header is not logged)."""
        record = {"request_id": self.request_id, "method": self.method, "path": capped(self.path),
                  "status": self.status, "duration_ms": _ms(self.started, time.perf_counter()),
                  "first_byte_ms": _ms(self.started, self.first_byte) if self.first_byte else None,
                  "session_id": capped(self.session_id) if self.session_id else None,
                  "sub": capped(self.sub) if self.sub else None,
                  "model": capped(self.model) if self.model else None,
                  "stream": self.stream, "tokens": self.tokens, "tools": self.tools, "error": self.error}
        return {k: v for k, v in record.items() if v is not None}


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 1)


class RequestLogMiddleware:
    """Assigns the request id and logs one line per request, after the last byte (streams included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = (_safe_id(headers.get("x-request-id") or headers.get("x-fc-request-id"))
                      or uuid.uuid4().hex)
        entry = RequestLog(request_id, scope["method"], scope["path"])
        scope.setdefault("state", {})["request_log"] = entry

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            elif entry.first_byte is None and message.get("body"):
                entry.first_byte = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except asyncio.CancelledError:
            entry.error = entry.error or "client_disconnected"
            raise
        except Exception as error:
            await self._answer_unexpected(error, entry, scope, receive, send_logged)
        finally:
            fields = entry.fields()  # as JSON in the text format; at the top level in the JSON format
            request_log.info("%s", json.dumps(fields, ensure_ascii=False), extra={"fields": fields})

    @staticmethod
    async def _answer_unexpected(error: Exception, entry: RequestLog, scope: Scope, receive: Receive,
                                 send: Send) -> None:
        """A 500 in the OpenAI shape if nothing was sent yet, and a log line naming the exception types only
        (messages can carry secrets). Not re-raised, so no server traceback either; a response already under
        way is left unfinished and the server closes the connection."""
        log.error("unhandled error on %s: %s", scope["path"], describe(error))
        entry.error = entry.error or "internal_error"
        if entry.status is None:
            await ApiError(500, "Internal server error.", "server_error", "internal_error").response()(
                scope, receive, send)


def _safe_id(value: str | None) -> str | None:
    """Accept a caller-supplied request id only if it is short and plain (it goes into logs)."""
    if value and len(value) <= 128 and all(c.isalnum() or c in "-_." for c in value):
        return value
    return None
