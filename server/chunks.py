"""OpenAI chat-completion objects and their SSE framing (docs/services.md, OpenAI-compatible server).

One `CompletionWriter` per response keeps the id, model and timestamp every chunk must repeat;
`ChatCompletionStream` is the streamed response's encoder (server/streaming.py).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.runner import Finished, RunItem, TextDelta, Usage
from server.errors import ApiError
from server.events import Rendered

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class CompletionWriter:
    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}

    def role(self) -> dict[str, Any]:
        return self._chunk({"role": "assistant", "content": ""})

    def content(self, text: str, agent_event: dict[str, Any] | None = None) -> dict[str, Any]:
        extra = {"agent_event": agent_event} if agent_event is not None else {}
        return self._chunk({"content": text}, **extra)

    def finish(self, reason: str) -> dict[str, Any]:
        return self._chunk({}, reason)

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The extra last chunk of `stream_options.include_usage`: no choices, only usage."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage.as_dict()}

    @staticmethod
    def error(error: ApiError) -> dict[str, Any]:
        """A failure after the stream started, in OpenAI's own shape (`{"error": {...}}` alone, no `choices`),
        so every OpenAI client raises it as an error instead of showing a finished answer; `agent_event`
        beside it is for clients that read our events and is ignored by the others."""
        return {**error.body(), "agent_event": {"type": "error", "code": error.code}}

    def completion(self, content: str, finish_reason: str, usage: Usage | None,
                   agent_events: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}],
            "agent_events": agent_events,
        }
        if usage is not None:
            body["usage"] = usage.as_dict()
        return body


@dataclass
class ChatCompletionStream:
    """A streamed run as `chat.completion.chunk`s: the role first, agent events as content text with their
    `agent_event`, the finish (and with `include_usage` the usage chunk), then `[DONE]`."""

    writer: CompletionWriter
    include_usage: bool = False

    def opening(self) -> bytes:
        return sse(self.writer.role())

    def item(self, item: RunItem, rendered: Rendered | None) -> bytes:
        if isinstance(item, TextDelta):
            return sse(self.writer.content(item.text))
        if rendered is not None:
            return sse(self.writer.content(rendered.text, rendered.agent_event))
        if isinstance(item, Finished):
            usage = (sse(self.writer.usage(item.usage)) if self.include_usage and item.usage is not None
                     else b"")
            return sse(self.writer.finish(item.finish_reason)) + usage
        return b""

    def error(self, error: ApiError) -> bytes:
        return sse(self.writer.error(error))  # as OpenAI: no `[DONE]` after an error

    def closing(self) -> bytes:
        return DONE
