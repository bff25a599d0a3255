"""Run items -> the client's response: SSE bytes for `stream: true`, one `chat.completion` otherwise.

A failure before anything useful was produced is raised (the route answers with a real 502/504); once the
stream has started, a failure becomes a final chunk with `finish_reason: "error"` and an `error` object,
followed by `[DONE]`, so a client never mistakes a broken answer for a complete one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agent.chunks import DONE, KEEPALIVE, CompletionWriter, Usage, sse
from agent.errors import ApiError, classify
from agent.events import render
from agent.runner import Finished, KeepAlive, RunItem, TextDelta

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    """What the request log needs to know once the response is over."""

    usage: Usage | None = None
    error_code: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


async def open_stream(items: AsyncIterator[RunItem], writer: CompletionWriter, *, include_usage: bool,
                      outcome: RunOutcome) -> AsyncIterator[bytes]:
    """Wait for the run's first item, raising its error if it failed at once; then stream SSE bytes."""
    try:
        first = await anext(items)
    except StopAsyncIteration:
        first = Finished("stop", None)
    except Exception as exc:
        await items.aclose()
        error = classify(exc)
        outcome.error_code = error.code
        raise error from None
    return _sse(first, items, writer, include_usage, outcome)


async def _sse(first: RunItem, items: AsyncIterator[RunItem], writer: CompletionWriter, include_usage: bool,
               outcome: RunOutcome) -> AsyncIterator[bytes]:
    yield sse(writer.role())
    try:
        item: RunItem | None = first
        while item is not None:
            if isinstance(item, KeepAlive):
                yield KEEPALIVE
            elif isinstance(item, TextDelta):
                yield sse(writer.content(item.text))
            elif isinstance(item, Finished):
                outcome.usage = item.usage
                yield sse(writer.finish(item.finish_reason))
                if include_usage and item.usage is not None:
                    yield sse(writer.usage(item.usage))
            elif (rendered := render(item)) is not None:
                outcome.events.append(rendered.agent_event)
                yield sse(writer.content(rendered.text, rendered.agent_event))
            item = await anext(items, None)
    except Exception as exc:  # whatever it is, the client gets an error chunk and [DONE], never a cut stream
        error = classify(exc)
        outcome.error_code = error.code
        yield sse(writer.error(error))
    finally:
        await items.aclose()  # on disconnect too: cancels the run
    yield DONE


async def collect(items: AsyncIterator[RunItem], writer: CompletionWriter, outcome: RunOutcome) -> dict[str, Any]:
    """The whole run as one `chat.completion`; raises `ApiError` when it failed."""
    from identity.errors import AuthorizationPending

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
    except AuthorizationPending as pending:
        # Nothing to stream the link to while waiting: answer with the link; the user asks again afterwards.
        if not any(e["type"] == "authorization_required" for e in outcome.events):
            outcome.events.append({"type": "authorization_required", "url": pending.url,
                                   "purpose": pending.purpose, "provider": None})
            notices.append((pending.url, f"Please click the link to authorize {pending.purpose}: {pending.url} \n\n"))
    except Exception as exc:
        error: ApiError = classify(exc)
        outcome.error_code = error.code
        raise error from None
    finally:
        await items.aclose()
    answer = "".join(text)
    shown = "".join(notice for url, notice in notices if not (url and url in answer))
    return writer.completion(shown + answer, finish_reason, outcome.usage, outcome.events)
