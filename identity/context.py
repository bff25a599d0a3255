"""The per-request identity context: who is calling and where to send events.

`app.py` binds one `RequestContext` per request; identity/ and tools/ read it through
`current_request_context()`, so tools never take (or see) the user's JWT as an argument. A contextvar is used
because every task the agent spawns for a request copies it, and concurrent requests never see each other's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from identity.errors import NoRequestContext


@dataclass(frozen=True)
class Caller:
    """The verified inbound user."""

    sub: str
    claims: Mapping[str, Any] = field(repr=False)
    token: str = field(repr=False)  # the ORIGINAL JWT string; never logged, never given to tools


@dataclass(frozen=True)
class AuthorizationRequired:
    """Event: show the user a link to authorize `purpose` with `provider`."""

    url: str
    purpose: str
    provider: str


@dataclass(frozen=True)
class AuthorizationCompleted:
    """Event: the user authorized; the waiting tool goes on."""

    purpose: str
    provider: str


async def _discard(_: object) -> None:
    return None


@dataclass
class RequestContext:
    caller: Caller
    session_id: str | None
    request_id: str
    emit: Callable[[object], Awaitable[None]] = _discard  # the request's event sink (app/agent stream it)
    wait_for_authorization: bool = True  # False in non-stream mode: raise AuthorizationPending instead


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("identity_request_context")


def bind_request_context(ctx: RequestContext) -> contextvars.Token[RequestContext]:
    return _current.set(ctx)


def reset_request_context(token: contextvars.Token[RequestContext]) -> None:
    _current.reset(token)


def current_request_context() -> RequestContext:
    """The bound context; raises NoRequestContext outside a request."""
    try:
        return _current.get()
    except LookupError:
        raise NoRequestContext() from None
