"""A streamed run as AG-UI events (the protocol's own models and SSE encoder, from ag-ui-protocol).

    RUN_STARTED
    TEXT_MESSAGE_START / _CONTENT... / _END           the model's text, one message per model turn
    TOOL_CALL_START / TOOL_CALL_ARGS... / TOOL_CALL_END  a tool call as the model writes it
    TOOL_CALL_RESULT                                   what the tool told the model
    CUSTOM "authorization_required" | "authorization_completed", value = the `agent_event` (server/events.py),
        followed by the same sentence as a text message of its own, so a UI that shows only messages still
        shows the link
    RUN_FINISHED (with the run's token usage), or RUN_ERROR (`message`, `code`: the OpenAI error's) when the
        run failed after it started

A tool call's arguments are the model's output and its result is what the model read: neither ever holds a
credential (tools never receive or return one).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ag_ui.core import (
    PROTOCOL_VERSION,
    BaseEvent,
    CustomEvent,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TokenUsage,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder

from agent.runner import Finished, RunItem, TextDelta, ToolArguments, ToolFinished, ToolStarted, Usage
from server.errors import ApiError
from server.events import Rendered

_ENCODER = EventEncoder()


def _new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


@dataclass
class AgUiStream:
    """The `StreamEncoder` (server/streaming.py) of one AG-UI run."""

    thread_id: str
    run_id: str
    model: str
    usage: Usage | None = None
    text_message: str | None = None  # the text message open now
    open_calls: list[str] = field(default_factory=list)  # tool calls whose arguments may still stream
    turn_message: str | None = None  # the assistant message the model's current tool calls belong to

    def opening(self) -> bytes:
        return _sse(RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id,
                                    protocol_version=PROTOCOL_VERSION))

    def item(self, item: RunItem, rendered: Rendered | None) -> bytes:
        if isinstance(item, ToolArguments):
            return _sse(ToolCallArgsEvent(tool_call_id=item.call_id, delta=item.delta))
        if isinstance(item, ToolStarted):
            return self._end_text() + self._start_call(item)
        frames = self._end_calls()
        if isinstance(item, TextDelta):
            return frames + self._text(item.text)
        frames += self._end_text()
        if isinstance(item, ToolFinished):
            self.turn_message = None  # the model's next turn is a new message
            return frames + _sse(ToolCallResultEvent(message_id=_new_id("result"), tool_call_id=item.call_id,
                                                     content=item.text, role="tool"))
        if isinstance(item, Finished):
            self.usage = item.usage
        elif rendered is not None and rendered.agent_event["type"].startswith("authorization"):
            event = rendered.agent_event
            return frames + _sse(CustomEvent(name=event["type"], value=event)) + _message(rendered.text)
        return frames

    def error(self, error: ApiError) -> bytes:
        return _sse(RunErrorEvent(message=error.message, code=error.code))

    def closing(self) -> bytes:
        usage = None if self.usage is None else [TokenUsage(
            model=self.model, input_tokens=self.usage.prompt_tokens,
            output_tokens=self.usage.completion_tokens, total_tokens=self.usage.total_tokens)]
        finished = RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, usage=usage)
        return self._end_calls() + self._end_text() + _sse(finished)

    def _text(self, text: str) -> bytes:
        start = b""
        if self.text_message is None:
            self.text_message = _new_id("msg")
            start = _sse(TextMessageStartEvent(message_id=self.text_message, role="assistant"))
        return start + _sse(TextMessageContentEvent(message_id=self.text_message, delta=text))

    def _end_text(self) -> bytes:
        if self.text_message is None:
            return b""
        ended, self.text_message = self.text_message, None
        self.turn_message = self.turn_message or ended  # the model's tool calls after its text belong to it
        return _sse(TextMessageEndEvent(message_id=ended))

    def _start_call(self, item: ToolStarted) -> bytes:
        self.open_calls.append(item.call_id)
        event = ToolCallStartEvent(tool_call_id=item.call_id, tool_call_name=item.tool,
                                   parent_message_id=self.turn_message)
        # the client names the message after the first call
        self.turn_message = self.turn_message or item.call_id
        return _sse(event)

    def _end_calls(self) -> bytes:
        frames = b"".join(_sse(ToolCallEndEvent(tool_call_id=call_id)) for call_id in self.open_calls)
        self.open_calls.clear()
        return frames


def _message(text: str) -> bytes:
    """A whole assistant text message of its own."""
    message_id = _new_id("msg")
    return _sse(TextMessageStartEvent(message_id=message_id, role="assistant")) + \
        _sse(TextMessageContentEvent(message_id=message_id, delta=text)) + \
        _sse(TextMessageEndEvent(message_id=message_id))


def _sse(event: BaseEvent) -> bytes:
    return _ENCODER.encode(event).encode()
