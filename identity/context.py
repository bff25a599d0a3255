"""The per-request identity context: who is calling (the verified JWT, its subject and claims), on which
session, and where to send events.

The request handler binds it once per request with `bind_request_context`, and identity/ reads the caller
from it and from nowhere else; tools never take or see the JWT. The Agent Identity SDK's own context
(`AgentIdentityContext`) is left alone: it is what the SDK's helpers read, and none runs on the request path,
so a copy of the JWT there would only be one more place for it. A contextvar, because every task the agent
spawns for a request copies it and concurrent requests never see each other's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from identity.errors import NoRequestContext


@dataclass(frozen=True)
class Caller:
    """The verified inbound user, as authentication returns it."""

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
    request_id: str
    session_id: str | None = None  # the client's conversation (`sessionId`, X-app-custom-session-id, ...)
    emit: Callable[[object], Awaitable[None]] = _discard  # the request's event sink (app/agent stream it)
    wait_for_authorization: bool = True  # False in non-stream mode: raise AuthorizationPending instead


@dataclass(frozen=True)
class BoundContext:
    """What `bind_request_context` returns and `reset_request_context` takes back."""

    token: contextvars.Token[RequestContext]


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("identity_request_context")


def bind_request_context(ctx: RequestContext) -> BoundContext:
    """Make `ctx` the current request's identity."""
    return BoundContext(_current.set(ctx))


def reset_request_context(bound: BoundContext) -> None:
    """Unbind: the context is back to what it was."""
    _current.reset(bound.token)


def current_request_context() -> RequestContext:
    """The bound context; raises NoRequestContext outside a request."""
    try:
        return _current.get()
    except LookupError:
        raise NoRequestContext() from None
