"""What every protocol's route shares around one agent run, whatever its wire format: what it runs the agent
with, which session the request belongs to, the caller's identity bound for the run's duration, and the run's
outcome in the request log."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from agent.model import ModelProvider
from agent.runner import AgentRunner, Emit, RequestScope
from identity.context import Caller, RequestContext, bind_request_context, reset_request_context
from identity.service import AgentIdentity
from server.events import tool_acted
from server.idempotency import HEADER, IdempotencyRecords, idempotency_key
from server.request_body import parse_body, read_body
from server.request_log import RequestLog
from server.shutdown import Shutdown
from server.streaming import RunOutcome

Parsed = TypeVar("Parsed")


@dataclass
class AgentRoute:
    """A protocol route's handler (its `handle` method), bound to the process's identity service, model and
    agent runner."""

    identity: AgentIdentity
    provider: ModelProvider
    runner: AgentRunner
    max_request_bytes: int
    keepalive_seconds: float
    shutdown: Shutdown | None = None  # the process's stop (server/shutdown.py); None: never told to stop
    idempotency: IdempotencyRecords | None = None  # the process's Idempotency-Key records; None: not honoured

    async def admit(self, request: Request,
                    parse: Callable[[Any], Parsed]) -> tuple[RequestLog, Caller, Parsed]:
        """The request's log entry, its authenticated caller and its body as `parse` reads it (failures raise
        the errors every route answers the same way: 401, 413, 400)."""
        entry: RequestLog = request.state.request_log
        entry.session_id = session_id(request)
        caller = await self.identity.authenticate(request.headers.get("authorization"))
        entry.sub = caller.sub
        return entry, caller, parse_body(await read_body(request, self.max_request_bytes), parse)

    async def once(self, request: Request, caller: Caller, body: BaseModel, outcome: RunOutcome,
                   respond: Callable[[], Awaitable[Response]]) -> Response:
        """`respond()`, or, for a request that repeats an earlier one's `Idempotency-Key`, that one's answer
        (server/idempotency.py). Kept: an answer that ended well, or any answer after a tool ran."""
        key = idempotency_key(request.headers.get(HEADER))
        if key is None or self.idempotency is None:
            return await respond()
        fingerprint = hashlib.sha256(f"{request.url.path}\0{body.model_dump_json()}".encode()).hexdigest()

        def keep(status: int) -> bool:
            return status == 200 and (outcome.error_code is None or tool_acted(outcome.events))

        return await self.idempotency.once(caller.sub, key, fingerprint, respond, keep)


def session_id(request: Request) -> str | None:
    """The client's session: `?sessionId=` or the `X-AgentRun-Session-ID` header (AgentRun's own), or the
    `X-app-custom-session-id` header (what the Agent Identity sample's clients send)."""
    return (request.query_params.get("sessionId") or request.headers.get("x-agentrun-session-id")
            or request.headers.get("x-app-custom-session-id"))


def request_scope(caller: Caller, entry: RequestLog, *, wait_for_authorization: bool) -> RequestScope:
    """Binds the caller's identity context (identity/context.py) around the run, with the run's event sink."""

    @contextmanager
    def scope(emit: Emit) -> Iterator[None]:
        context = RequestContext(caller=caller, request_id=entry.request_id, session_id=entry.session_id,
                                 emit=emit, wait_for_authorization=wait_for_authorization)
        bound = bind_request_context(context)
        try:
            yield
        finally:
            reset_request_context(bound)

    return scope


def outcome_logger(entry: RequestLog) -> Callable[[RunOutcome], None]:
    """What the request log keeps of a run once its response is over."""

    def log_outcome(outcome: RunOutcome) -> None:
        entry.tokens = outcome.usage.as_dict() if outcome.usage else None
        entry.error = entry.error or outcome.error_code
        entry.record_events(outcome.events)

    return log_outcome
