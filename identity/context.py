"""The per-request identity context: who is calling, on which session, and where to send events.

The request handler binds it once per request with `bind_request_context`. The caller's verified JWT, its
subject and the session id are handed to the Agent Identity SDK's own context (`AgentIdentityContext`: the
entry point the SDK's helpers read, contextvars, no I/O), and identity/ reads them back from there; tools
never take or see the JWT. What the SDK's context has no slot for (the verified claims, the event sink,
whether the request can wait for consent) travels beside it in `RequestContext`. Contextvars, because every
task the agent spawns for a request copies them and concurrent requests never see each other's.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_identity_python_sdk.context import AgentIdentityContext

from identity.errors import NoRequestContext

MAX_SESSION_ID_LENGTH = 128  # a session id travels inside the sealed OAuth2 state and in log lines


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
    """Make `ctx` the current request's identity: the SDK's context gets the JWT, the subject and the session
    id (as the custom state, where the SDK's own sample puts it)."""
    AgentIdentityContext.set_user_token(ctx.caller.token)
    AgentIdentityContext.set_user_id(ctx.caller.sub)
    AgentIdentityContext.set_custom_state((ctx.session_id or "")[:MAX_SESSION_ID_LENGTH])
    return BoundContext(_current.set(ctx))


def reset_request_context(bound: BoundContext) -> None:
    """Unbind: the SDK's context is emptied and ours is back to what it was."""
    AgentIdentityContext.clear()
    _current.reset(bound.token)


def current_request_context() -> RequestContext:
    """The bound context; raises NoRequestContext outside a request."""
    try:
        return _current.get()
    except LookupError:
        raise NoRequestContext() from None


def current_user_token() -> str:
    """The current caller's verified JWT, from the SDK's context; raises NoRequestContext outside a
    request."""
    token = AgentIdentityContext.get_user_token()
    if not token:
        raise NoRequestContext()
    return token


def current_session_id() -> str:
    """The current request's session id ("" when the client sent none), from the SDK's context."""
    return AgentIdentityContext.get_custom_state() or ""
