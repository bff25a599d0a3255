"""Runs the agent for one request and yields what the client should see, in order.

The run's first model request is posted before the graph starts (`agent.early_call`). Three sources feed
one queue: the model's text (`agent.tokens`, as it comes off the wire), the LangGraph stream (tool starts and
ends, usage, finish reason) and the request's event sink (authorization requests emitted by identity/
through `RequestContext.emit`). The consumer drains the queue, yielding `KEEPALIVE` whenever nothing arrived
for a while so proxies keep the connection open. Closing or cancelling the consumer (client gone) cancels
the run: no task outlives it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.chunks import Usage
from agent.early_call import EarlyStart
from agent.events import ToolFinished, ToolStarted
from agent.graph import Agent, RunOptions, build_agent
from agent.model import ModelProvider
from agent.tokens import model_text_to

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.tools import BaseTool

log = logging.getLogger(__name__)

Emit = Callable[[object], Awaitable[None]]
# Binds the per-request context (identity's RequestContext) around the run, given the run's event sink.
RequestScope = Callable[[Emit], AbstractContextManager[Any]]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: str
    usage: Usage | None


class KeepAlive:
    """Nothing happened for `keepalive_seconds`."""


KEEPALIVE = KeepAlive()
RunItem = TextDelta | Finished | KeepAlive | object  # object: an event for agent.events.render


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


# Compiled agents kept, one per distinct model settings; building another takes about a millisecond.
AGENT_CACHE_SIZE = 32


class AgentRunner:
    """The process-wide agents; each built on first use (the model endpoint may need a lookup first)."""

    def __init__(self, provider: ModelProvider, tools: Sequence[BaseTool]) -> None:
        self.provider = provider
        self.tools = list(tools)
        self._agents: OrderedDict[RunOptions, Agent] = OrderedDict()  # least recently used first
        self.early_start = EarlyStart()

    async def agent(self, options: RunOptions) -> Agent:
        agent = self._agents.get(options)
        if agent is None:
            agent = build_agent(await self.provider.chat_model(), self.tools, options)
            self._agents[options] = agent
            if len(self._agents) > AGENT_CACHE_SIZE:
                self._agents.popitem(last=False)
        else:
            self._agents.move_to_end(options)
        return agent

    async def run(self, messages: list[BaseMessage], options: RunOptions, scope: RequestScope,
                  keepalive_seconds: float | None = None) -> AsyncIterator[RunItem]:
        """Yield text deltas, events and keep-alives, then one `Finished`; raise what the run raised."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        task = asyncio.create_task(self._produce(queue, messages, options, scope), name="agent-run")
        try:
            while True:
                try:
                    async with asyncio.timeout(keepalive_seconds):  # no task per item, unlike wait_for
                        item = await queue.get()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _produce(self, queue: asyncio.Queue[object], messages: list[BaseMessage], options: RunOptions,
                       scope: RequestScope) -> None:
        tracker = _RunTracker()
        try:
            agent = await self.agent(options)
            with scope(queue.put), model_text_to(lambda text: queue.put_nowait(TextDelta(text))):
                async with self.early_start.first_call(*agent.first_call(messages)):
                    stream = agent.graph.astream({"messages": messages}, stream_mode="updates")
                    async for update in stream:
                        for item in tracker.translate(update):
                            queue.put_nowait(item)
            queue.put_nowait(Finished(tracker.finish_reason, tracker.usage))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which decides how the client sees it
            queue.put_nowait(_Failed(exc))
        finally:
            queue.put_nowait(_END)


class _RunTracker:
    """Turns LangGraph node updates into run items; remembers usage and the last finish reason."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason = "stop"

    def translate(self, updates: dict[str, Any]) -> list[object]:
        return [item for node, update in updates.items() for item in self._update(node, update)]

    def _update(self, node: str, update: Any) -> list[object]:
        messages = [m for part in _as_list(update) if isinstance(part, dict) for m in part.get("messages", ())]
        if node == "model":
            return [item for message in messages for item in self._model_message(message)]
        if node == "tools":
            return [ToolFinished(getattr(m, "name", None) or "tool", getattr(m, "status", "success") != "error")
                    for m in messages]
        return []

    def _model_message(self, message: Any) -> list[object]:
        usage = getattr(message, "usage_metadata", None)
        if usage:
            self.usage = (self.usage or Usage()) + Usage(usage.get("input_tokens", 0),
                                                         usage.get("output_tokens", 0))
        reason = (getattr(message, "response_metadata", None) or {}).get("finish_reason")
        if reason in ("stop", "length", "content_filter"):
            self.finish_reason = reason
        return [ToolStarted(call["name"]) for call in getattr(message, "tool_calls", None) or ()]


def _as_list(update: Any) -> list[Any]:
    return update if isinstance(update, list) else [update]
