"""The agent's first model request, sent while LangGraph is still setting the run up.

From `astream` to the model node's HTTP call LangGraph spends 1.2-1.5 ms of a cold request (bench/RESULTS.md,
benchmark 1), and the model only starts working after that. Yet the first request of a run is known before
the graph starts: the system prompt, the caller's messages, the tool schemas. `EarlyStart.first_call` has the
agent's own tool-bound chat model build that request (through `_astream`, the method the model node's call
ends in, so the same code builds both) and posts it; when the model node's call then sends a request that is
the same byte for byte, `JsonChatCompletions.create` takes the response already on its way instead of posting
again. The early response is only read from there, so its text goes where the node's call sends text and
nowhere else.

A request that differs is never taken: the early one is cancelled and early start is switched off for the rest
of the process, with a warning. So a LangChain release that builds requests differently, or a chat model that
does not post through `create`, costs one cancelled model call, not one per run. A run that ends before its
first model call (the client left) cancels its early request too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import aclosing, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import RunnableBinding

log = logging.getLogger(__name__)

# Event-loop turns aiohttp takes to put a request on a pooled connection: one for the task that posts it and,
# before Python 3.12 (no eager tasks), one for the task that writes its body.
TURNS_TO_SEND = 1 if sys.version_info >= (3, 12) else 2


@dataclass(frozen=True)
class WireRequest:
    """What makes two streamed model requests the same request. Never printed: the headers carry the model's
    API key and the body the conversation."""

    body: bytes = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    params: tuple[tuple[str, str], ...] = field(repr=False)
    timeout_s: float


Post = Callable[[], Coroutine[Any, Any, "aiohttp.ClientResponse"]]


class Outcome(Enum):
    BUILDING = "building"  # the early request is being built; `create` posts it and stops there
    SENT = "sent"  # posted, waiting for the run's first model call
    TAKEN = "taken"  # the first call was the same request and took the response
    DIFFERED = "differed"  # the first call was another request: the early one was cancelled
    UNUSED = "unused"  # the run ended before its first model call (cancelled), or the build failed
    NOT_SENT = "not sent"  # the model answered without posting its request through `create`


# A first call that differed, or a model that does not post through `create`: it would happen again every run.
SWITCHES_OFF = (Outcome.DIFFERED, Outcome.NOT_SENT)


class _Posted(Exception):
    """Ends the early build once its request is posted (raised in `create`, caught by `EarlyCall.send`)."""


_current: ContextVar[EarlyCall | None] = ContextVar("early_model_call", default=None)


class EarlyCall:
    """One run's early first request: posted once, then taken by an identical first call or cancelled."""

    def __init__(self) -> None:
        self.outcome = Outcome.BUILDING
        self._request: WireRequest | None = None
        self._response: asyncio.Task[aiohttp.ClientResponse] | None = None

    async def send(self, model: RunnableBinding, messages: list[BaseMessage]) -> None:
        """Build and post the request `model` makes for `messages`, then let aiohttp write it."""
        stream = model.bound._astream(messages, **model.kwargs)  # private: see the module's docstring
        try:
            async with aclosing(stream):
                async for _ in stream:
                    break  # it answered without posting through `create`: nothing is early
        except _Posted:
            for _ in range(TURNS_TO_SEND):
                await asyncio.sleep(0)
            return
        except Exception as error:  # noqa: BLE001 - the node's own call meets the same error and reports it
            log.debug("the first model request could not be built early: %s", type(error).__name__)
            self.outcome = Outcome.UNUSED
            return
        self.outcome = Outcome.NOT_SENT

    def post(self, request: WireRequest, post: Post) -> None:
        self._request = request
        self._response = asyncio.create_task(post(), name="early-model-request")
        self.outcome = Outcome.SENT

    def take(self, request: WireRequest) -> asyncio.Task[aiohttp.ClientResponse] | None:
        """The response to `request` if it is the early request; either way the early request is settled."""
        response, self._response = self._response, None
        if response is not None and request == self._request:
            self.outcome = Outcome.TAKEN
            return response
        self.outcome = Outcome.DIFFERED
        _cancel(response)
        return None

    def settle(self) -> None:
        """At the end of the run: cancel the early request if nothing took it."""
        response, self._response = self._response, None
        if response is not None:
            self.outcome = Outcome.UNUSED
            _cancel(response)


def _cancel(response: asyncio.Task[aiohttp.ClientResponse] | None) -> None:
    """Stop a request nobody will read: closing its connection tells the model to stop as well."""
    if response is None:
        return
    if not response.done():
        response.cancel()
    elif not response.cancelled() and response.exception() is None:
        response.result().close()


async def post_or_take(request: WireRequest, post: Post) -> aiohttp.ClientResponse:
    """How `JsonChatCompletions.create` sends a streamed request: while an early request is being built, post
    it in the background and end the build; as the run's first call, take the early response if the request is
    the same; otherwise post it now."""
    early = _current.get()
    if early is not None and early.outcome is Outcome.BUILDING:
        early.post(request, post)
        raise _Posted
    if early is not None and early.outcome is Outcome.SENT and (response := early.take(request)) is not None:
        return await response
    return await post()


class EarlyStart:
    """Sends each run's first model request early until one run's first call differs from it."""

    def __init__(self) -> None:
        self.outcomes: Counter[Outcome] = Counter()  # how the runs' early requests ended

    @property
    def enabled(self) -> bool:
        return not any(self.outcomes[outcome] for outcome in SWITCHES_OFF)

    @asynccontextmanager
    async def first_call(self, model: RunnableBinding,
                         messages: Sequence[BaseMessage]) -> AsyncIterator[None]:
        """Inside the block, the run's first streamed model call takes the early response to `model` (the
        agent's tool-bound chat model) for `messages` (the messages its model node sends, system prompt first)
        if it sends the same request."""
        if not self.enabled:
            yield
            return
        early = EarlyCall()
        token = _current.set(early)
        try:
            await early.send(model, list(messages))
            yield
        finally:
            early.settle()
            _current.reset(token)
            self.outcomes[early.outcome] += 1
            if early.outcome in SWITCHES_OFF:
                log.warning("the agent's first model request could not be sent early (%s); "
                            "early start is off for this process", early.outcome.value)
