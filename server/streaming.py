"""Run items -> the client's response: server-sent events for a streamed run, one `chat.completion` otherwise.

`EventStreamResponse` is the streamed response of every protocol; a `StreamEncoder` (server/chunks.py for
OpenAI's chunks, server/agui_stream.py for AG-UI's events) turns each run item into that protocol's frames.
A failure before anything useful was produced is answered with a real error status (502, 504, ...) in the
OpenAI error shape; once the stream has started, a failure is the protocol's last error event (OpenAI's
`data: {"error": {...}}` with no `[DONE]` after it; AG-UI's `RUN_ERROR`), so a client never mistakes a broken
answer for a complete one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from agent.runner import Finished, KeepAlive, RunItem, TextDelta, Usage
from server.chunks import KEEPALIVE, CompletionWriter
from server.errors import ApiError
from server.events import Rendered, failure_after_tools, render, tool_acted
from server.failures import classify
from server.shutdown import Shutdown, restarting_error

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """What the request log needs to know once the response is over."""

    usage: Usage | None = None
    error_code: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    # Set while the client has an authorization link and the run waits for the user (shutdown ends it at
    # once).
    waiting_for_user: asyncio.Event = field(default_factory=asyncio.Event)


class StreamEncoder(Protocol):
    """One streamed response's frames in a protocol's wire format (SSE bytes; `b""` for nothing)."""

    def opening(self) -> bytes:
        """The first frame, sent with the run's first item."""

    def item(self, item: RunItem, rendered: Rendered | None) -> bytes:
        """A run item (`rendered`: its agent event, for items that are one)."""

    def error(self, error: ApiError) -> bytes:
        """The last frame of a run that failed after the stream started."""

    def closing(self) -> bytes:
        """The last frame of a run that ended well."""


class EventStreamResponse(StreamingResponse):
    """The ASGI response of a streamed run: a StreamingResponse whose body is the protocol's frames.

    The status waits for the run's first item: a run that fails before producing anything is answered with a
    real error status (502, 504, ...) in the OpenAI shape; after that, a failure is the final error chunk.
    Everything else the stream needs, the disconnect watch included, is set up while the model is still
    thinking, so the first token has only to be written (Starlette's StreamingResponse sets up after the
    route returns, i.e. after the first token). A client that goes away, before or during the stream,
    cancels the run. When the process stops (`shutdown`), the run is cancelled and the client gets the
    protocol's last error event `service_restarting` (or a 503 if nothing was sent yet). `on_close(outcome)`
    runs once the response is over, whichever way it ended.
    """

    def __init__(self, items: AsyncIterator[RunItem], encoder: StreamEncoder, *, outcome: RunOutcome,
                 headers: Mapping[str, str], shutdown: Shutdown | None = None,
                 on_close: Callable[[RunOutcome], None] | None = None) -> None:
        super().__init__(self._frames(), media_type="text/event-stream", headers=headers)
        self.items, self.encoder, self.outcome = items, encoder, outcome
        self.shutdown, self.on_close = shutdown or Shutdown(), on_close  # None: never told to stop
        self.started = False
        self._first: RunItem = Finished("stop", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        respond = asyncio.create_task(self._respond(scope, receive, send), name="sse-response")
        disconnected = asyncio.create_task(_until_disconnect(receive), name="sse-disconnect-watch")
        must_end = asyncio.create_task(self.shutdown.stream_must_end(self.outcome.waiting_for_user),
                                       name="sse-shutdown-watch")
        try:
            done, _ = await asyncio.wait((respond, disconnected, must_end),
                                         return_when=asyncio.FIRST_COMPLETED)
            if respond in done:
                respond.result()  # what the response raised, if anything, goes on up as it is
            elif disconnected in done:  # the client left first
                self.outcome.error_code = self.outcome.error_code or "client_disconnected"
            else:
                respond.cancel()
                await asyncio.gather(respond, return_exceptions=True)
                await self._last_word(scope, receive, send)
        finally:
            for task in (respond, disconnected, must_end):
                task.cancel()
            await asyncio.gather(respond, disconnected, must_end, return_exceptions=True)
            await self.items.aclose()  # cancels the run if it is still going
            if self.on_close is not None:
                self.on_close(self.outcome)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            first = await anext(self.items)
        except StopAsyncIteration:
            first = Finished("stop", None)
        except Exception as exc:
            error = classify(exc)
            self.outcome.error_code = error.code
            await error.response()(scope, receive, send)
            return
        self._first = first
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        self.started = True
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _frames(self) -> AsyncIterator[bytes]:
        """The body, from the run's first item on (`_respond` waits for it before the status goes out)."""
        chunks = _frames(self._first, self.items, self.encoder, self.outcome)
        # The opening frame and the first item's leave in one write: the client wakes once for both.
        yield await anext(chunks) + await anext(chunks, b"")
        async for chunk in chunks:
            yield chunk

    async def _last_word(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The process is stopping: say so, in the stream if it started, else as a 503."""
        error = restarting_error()
        self.outcome.error_code = error.code
        if not self.started:
            await error.response()(scope, receive, send)
            return
        await send({"type": "http.response.body", "body": self.encoder.error(error), "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _frames(first: RunItem, items: AsyncIterator[RunItem], encoder: StreamEncoder,
                  outcome: RunOutcome) -> AsyncIterator[bytes]:
    yield encoder.opening()
    try:
        item: RunItem | None = first
        while item is not None:
            if isinstance(item, KeepAlive):
                yield KEEPALIVE
            else:
                rendered = None
                if isinstance(item, Finished):
                    outcome.usage = item.usage
                elif not isinstance(item, TextDelta) and (rendered := render(item)) is not None:
                    outcome.events.append(rendered.agent_event)
                if frame := encoder.item(item, rendered):
                    yield frame
                if rendered is not None:  # once the link was sent
                    _note_waiting(outcome.waiting_for_user, rendered.agent_event["type"])
            item = await anext(items, None)
    except Exception as exc:  # whatever it is, the client gets an error event and the end, never a cut stream
        error = classify(exc)
        outcome.error_code = error.code
        yield encoder.error(error)
        return  # the stream ends after its error event
    finally:
        await items.aclose()  # on disconnect too: cancels the run
    yield encoder.closing()


def _note_waiting(waiting_for_user: asyncio.Event, event_type: str) -> None:
    if event_type == "authorization_required":
        waiting_for_user.set()
    elif event_type == "authorization_completed":
        waiting_for_user.clear()


async def collect(items: AsyncIterator[RunItem], writer: CompletionWriter,
                  outcome: RunOutcome) -> dict[str, Any]:
    """The whole run as one `chat.completion`; raises `ApiError` when it failed."""
    text: list[str] = []
    # Authorization notices, shown before the answer unless the model's answer already quotes the link.
    notices: list[tuple[str, str]] = []
    finish_reason = "stop"
    try:
        async for item in items:
            if isinstance(item, TextDelta):
                text.append(item.text)
            elif isinstance(item, Finished):
                finish_reason, outcome.usage = item.finish_reason, item.usage
            elif not isinstance(item, KeepAlive) and (rendered := render(item)) is not None:
                outcome.events.append(rendered.agent_event)
                if rendered.agent_event["type"].startswith("authorization"):
                    notices.append((rendered.agent_event.get("url") or "", rendered.text))
    except Exception as exc:
        error: ApiError = classify(exc)
        outcome.error_code = error.code
        if not tool_acted(outcome.events):
            raise error from None
        # A tool already acted (e.g. wrote a document): no 429/5xx, which many clients retry whatever
        # x-should-retry says, so the side effect cannot be repeated. The answer says what happened.
        outcome.events.append({"type": "error", "code": error.code})
        text.append(failure_after_tools(outcome.events, error))
        finish_reason = "stop"
    finally:
        await items.aclose()
    answer = "".join(text)
    shown = "".join(notice for url, notice in notices if not (url and url in answer))
    return writer.completion(shown + answer, finish_reason, outcome.usage, outcome.events)
