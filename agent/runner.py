"""Runs the agent for one request and yields what the client should see, in order.

Two sources feed one queue: the LangGraph stream of the run in its "messages" mode (the agent's model node's
text as it arrives, the tool calls it starts, usage, finish reason, and each tool's result), and the request's
event sink (authorization requests that identity/ emits through `RequestContext.emit` while a tool waits). The
consumer drains the queue, yielding `KEEPALIVE` whenever nothing arrived for a while so proxies keep the
connection open. Closing or cancelling the consumer (the client went away) cancels the run: no task outlives
it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.graph.state import CompiledStateGraph

from agent.graph import MODEL_NODE, RunOptions, build_agent
from agent.model import ModelProvider

log = logging.getLogger(__name__)

Emit = Callable[[object], Awaitable[None]]
# Binds the per-request context (identity's RequestContext) around the run, given the run's event sink.
RequestScope = Callable[[Emit], AbstractContextManager[Any]]


# --- what a run yields --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens)

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolStarted:
    """The model began a tool call (its arguments follow as `ToolArguments`)."""

    tool: str
    call_id: str = ""


@dataclass(frozen=True)
class ToolArguments:
    """A piece of a tool call's JSON arguments, as the model writes them (model output: never a
    credential)."""

    call_id: str
    delta: str


@dataclass(frozen=True)
class ToolFinished:
    tool: str
    ok: bool = True
    code: str | None = None  # why the tool did not do its job (tools/outcome.py)
    call_id: str = ""
    text: str = field(default="", repr=False)  # what the tool told the model


@dataclass(frozen=True)
class Finished:
    finish_reason: str
    usage: Usage | None


class KeepAlive:
    """Nothing happened for `keepalive_seconds`."""


KEEPALIVE = KeepAlive()
# `object`: identity's events (identity/context.py: AuthorizationRequired, AuthorizationCompleted).
RunItem = TextDelta | ToolStarted | ToolArguments | ToolFinished | Finished | KeepAlive | object


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


class AgentRunner:
    """The process-wide agent, built on first use (the model endpoint may need a lookup first)."""

    def __init__(self, provider: ModelProvider, tools: Sequence[BaseTool]) -> None:
        self.provider = provider
        self.tools = list(tools)
        self._agent: CompiledStateGraph | None = None

    async def agent(self) -> CompiledStateGraph:
        if self._agent is None:
            model = await self.provider.chat_model()
            self._agent = self._agent or build_agent(model, self.tools)
        return self._agent

    async def run(self, messages: list[BaseMessage], options: RunOptions, scope: RequestScope,
                  keepalive_seconds: float | None = None) -> AsyncIterator[RunItem]:
        """Yield text deltas, events and keep-alives, then one `Finished`; raise what the run raised."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        task = asyncio.create_task(self._produce(queue, messages, options, scope), name="agent-run")
        try:
            while True:
                try:
                    async with asyncio.timeout(keepalive_seconds):
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
            agent = await self.agent()
            with scope(queue.put):
                async for message, metadata in agent.astream({"messages": messages}, context=options,
                                                             stream_mode="messages"):
                    for item in tracker.translate(message, metadata):
                        queue.put_nowait(item)
            queue.put_nowait(Finished(tracker.finish_reason, tracker.usage))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which decides how the client sees it
            queue.put_nowait(_Failed(exc))
        finally:
            queue.put_nowait(_END)


class _RunTracker:
    """Turns LangGraph's "messages" stream into run items; remembers usage and the last finish reason.

    The user reads the agent's own model node only: not tool results, and not the model of a graph nested in
    a tool (its namespace reads "parent:<task>|node:<task>"). The model node's chunks also carry the tool
    calls it starts, its usage and its finish reason; the tools node's messages say how each tool ended.
    """

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.finish_reason = "stop"
        self._call_ids: dict[int | None, str] = {}  # the current model message's tool calls, by chunk index

    def translate(self, message: BaseMessage, metadata: dict[str, Any]) -> list[object]:
        if "|" in metadata.get("langgraph_checkpoint_ns", ""):
            return []
        node = metadata.get("langgraph_node")
        if node == "tools" and isinstance(message, ToolMessage):
            return [_finished(message)]
        if node != MODEL_NODE or not isinstance(message, AIMessageChunk):
            return []
        if usage := message.usage_metadata:
            self.usage = (self.usage or Usage()) + Usage(usage.get("input_tokens", 0),
                                                         usage.get("output_tokens", 0))
        reason = message.response_metadata.get("finish_reason")
        if reason in ("stop", "length", "content_filter"):
            self.finish_reason = reason
        items: list[object] = [TextDelta(message.text)] if message.text else []
        for call in message.tool_call_chunks:
            if call.get("name"):  # a call's first chunk: its name and id (later ones carry only the index)
                self._call_ids[call.get("index")] = call.get("id") or ""
                items.append(ToolStarted(call["name"], self._call_ids[call.get("index")]))
            if call.get("args"):
                items.append(ToolArguments(self._call_ids.get(call.get("index"), ""), call["args"]))
        return items


def _finished(message: Any) -> ToolFinished:
    """A tool's ToolMessage as an event: its outcome artifact (tools/outcome.py), else its status (a tool that
    raised, or was called with invalid arguments, is an error)."""
    outcome = getattr(message, "artifact", None)
    name = getattr(message, "name", None) or "tool"
    said = {"call_id": getattr(message, "tool_call_id", None) or "", "text": getattr(message, "text", "")}
    if isinstance(outcome, dict) and "ok" in outcome:
        return ToolFinished(name, bool(outcome["ok"]), outcome.get("code"), **said)
    if getattr(message, "status", "success") == "error":
        return ToolFinished(name, False, "tool_error", **said)
    return ToolFinished(name, **said)


