"""A local OpenAI-compatible chat model with scripted, deterministic answers (see `model_script`).

Serves the OpenAI wire format the product's clients (the `openai` SDK, `langchain_openai.ChatOpenAI`) parse:
- `POST /v1/chat/completions`, `Authorization: Bearer <api key>`; non-stream, or `stream: true` as
  server-sent events: a first chunk with `role`, the reply word by word (or a tool call: id, type and name
  first, then the arguments in pieces), a last chunk with `finish_reason`, a usage chunk when
  `stream_options.include_usage` is set, then `data: [DONE]`. `max_tokens` / `max_completion_tokens`
  truncate the reply (counted in stream pieces) with `finish_reason: "length"`.
- `GET /v1/models`.
Emulator-only routes:
- `GET /emulator/requests`: every chat-completions body received, in order (authorized or not), so tests
  can prove no secret ever reached the model; `POST /emulator/requests/clear` forgets them.
- `GET|POST /emulator/stream {"token_delay_ms": N}`: pause N ms between streamed pieces, so streaming is
  visible in a browser or a test. Reset by `POST /emulator/reset` along with faults.
Faults (5xx, throttling, time to first token) come from `emulator_app`'s `/emulator/faults`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from emulators._server import emulator_app
from emulators.model_script import Reply, ToolCall, arguments_json, message_text, plan_reply

MODELS = ("qwen-plus", "qwen-max", "qwen-turbo")
ARGUMENT_PIECE_CHARS = 12  # tool arguments arrive split across chunks, as real models send them
# Stream pieces: one CJK character (or full-width punctuation) at a time, otherwise a word and its spaces.
_WIDE = r"\u3000-\u9fff\uf900-\ufaff\uff00-\uffef"
_PIECES = re.compile(rf"[{_WIDE}]|[^\s{_WIDE}]+\s*|\s+")
# Faults injected by `emulator_app` use generic codes; OpenAI names them its own way.
_FAULT_CODES = {"Throttling": "rate_limit_exceeded", "ServiceUnavailable": "server_error",
                "RequestTimeout": "request_timeout"}


class ModelEmulator:
    """An OpenAI-compatible endpoint that accepts one API key and records every request body."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key
        self.requests: list[Any] = []
        self.token_delay_ms = 0.0
        # Streams end with an error event after this many chunks (None: never). Chosen: OpenAI's in-stream
        # shape, `data: {"error": {...}}` and no `[DONE]`, which the openai SDK raises as `APIError`.
        self.error_after_chunks: int | None = None
        self.app = emulator_app("model", self._routes(), openai_error, on_reset=self._reset_knobs)

    def _reset_knobs(self) -> None:
        self.token_delay_ms = 0.0
        self.error_after_chunks = None

    def _routes(self) -> list[Route]:
        async def list_requests(_: Request) -> Response:
            return JSONResponse(self.requests)

        async def clear_requests(_: Request) -> Response:
            self.requests.clear()
            return JSONResponse({"cleared": True})

        async def get_stream_settings(_: Request) -> Response:
            return JSONResponse({"token_delay_ms": self.token_delay_ms,
                                 "error_after_chunks": self.error_after_chunks})

        async def set_stream_settings(request: Request) -> Response:
            try:
                settings = await request.json()
                if not settings or set(settings) - {"token_delay_ms", "error_after_chunks"}:
                    raise ValueError(settings)
                delay = max(0.0, float(settings.get("token_delay_ms", self.token_delay_ms)))
                error_after = settings.get("error_after_chunks", self.error_after_chunks)
                error_after = None if error_after is None else max(0, int(error_after))
            except (ValueError, AttributeError, TypeError):
                return openai_error(400, None, 'Send {"token_delay_ms": <number>, "error_after_chunks": '
                                               '<number or null>}.')
            self.token_delay_ms, self.error_after_chunks = delay, error_after
            return await get_stream_settings(request)

        return [
            Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/emulator/requests", list_requests, methods=["GET"]),
            Route("/emulator/requests/clear", clear_requests, methods=["POST"]),
            Route("/emulator/stream", get_stream_settings, methods=["GET"]),
            Route("/emulator/stream", set_stream_settings, methods=["POST"]),
        ]

    def _authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(),
                                                                  self._api_key.encode())

    async def _models(self, request: Request) -> Response:
        if not self._authorized(request):
            return _invalid_api_key()
        models = [{"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "emulator"}
                  for name in MODELS]
        return JSONResponse({"object": "list", "data": models})

    async def _chat_completions(self, request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            self.requests.append(raw)
            return openai_error(400, None, "We could not parse the JSON body of your request.")
        self.requests.append(body)
        if not self._authorized(request):
            return _invalid_api_key()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return openai_error(400, None, "'messages' must be a non-empty array.")
        if not body.get("model"):
            return openai_error(400, None, "you must provide a model parameter.")
        completion = _Completion(body, plan_reply(body))
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return StreamingResponse(self._sse(completion, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return JSONResponse(completion.whole())

    async def _sse(self, completion: _Completion, include_usage: bool) -> AsyncIterator[str]:
        error_after = self.error_after_chunks
        for index, chunk in enumerate(completion.chunks(include_usage)):
            if index == error_after:
                error = {"message": "The server had an error while processing your request.",
                         "type": "server_error", "param": None, "code": "server_error"}
                yield f"data: {json.dumps({'error': error})}\n\n"
                return
            if index > 1 and self.token_delay_ms:  # the first two (role, first piece) go out together
                await asyncio.sleep(self.token_delay_ms / 1000)
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"


class _Completion:
    """One scripted reply rendered as a whole completion or as stream chunks (same id, text and usage)."""

    def __init__(self, body: dict[str, Any], reply: Reply) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = str(body["model"])
        self.tool_calls = [("call_" + secrets.token_hex(12), call) for call in reply.tool_calls]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        pieces = _PIECES.findall(reply.text)
        self.truncated = isinstance(limit, int) and 0 < limit < len(pieces) and not self.tool_calls
        self.pieces = pieces[:limit] if self.truncated else pieces
        self.usage = _usage(body, self.pieces, self.tool_calls)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "length" if self.truncated else "stop"

    def whole(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.pieces) or None}
        if self.tool_calls:
            message["tool_calls"] = [{"id": call_id, "type": "function",
                                      "function": {"name": call.name, "arguments": arguments_json(call)}}
                                     for call_id, call in self.tool_calls]
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": self.finish_reason}],
                "usage": self.usage}

    def chunks(self, include_usage: bool) -> list[dict[str, Any]]:
        usage_field = {"usage": None} if include_usage else {}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in self.pieces]
        for index, (call_id, call) in enumerate(self.tool_calls):
            deltas += _tool_call_deltas(index, call_id, call)
        chunks = [self._chunk([_choice(delta, None)], usage_field) for delta in deltas]
        chunks.append(self._chunk([_choice({}, self.finish_reason)], usage_field))
        if include_usage:
            chunks.append(self._chunk([], {"usage": self.usage}))
        return chunks

    def _chunk(self, choices: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": choices, **extra}


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _tool_call_deltas(index: int, call_id: str, call: ToolCall) -> list[dict[str, Any]]:
    """Standard streaming of one tool call: id, type and name with empty arguments, then argument pieces."""
    arguments = arguments_json(call)
    first = {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                             "function": {"name": call.name, "arguments": ""}}]}
    pieces = [arguments[i:i + ARGUMENT_PIECE_CHARS] for i in range(0, len(arguments), ARGUMENT_PIECE_CHARS)]
    rest = [{"tool_calls": [{"index": index, "function": {"arguments": piece}}]} for piece in pieces]
    return [first, *rest]


def _usage(body: dict[str, Any], pieces: list[str], tool_calls: list[tuple[str, ToolCall]]) -> dict[str, int]:
    """Rough but deterministic counts: a prompt token per 4 characters, a completion token per piece."""
    prompt_chars = sum(len(message_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
    prompt = max(1, prompt_chars // 4)
    completion = len(pieces) + sum(len(arguments_json(call)) // 4 + 1 for _, call in tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _invalid_api_key() -> Response:
    return openai_error(401, "invalid_api_key", "Incorrect API key provided.")


def openai_error(status: int, code: str | None, message: str) -> Response:
    """OpenAI's error body: `type` follows the status, as OpenAI's own errors do."""
    error_type = ("rate_limit_error" if status == 429 else "server_error" if status >= 500
                  else "invalid_request_error")
    body = {"message": message, "type": error_type, "param": None, "code": _FAULT_CODES.get(code or "", code)}
    return JSONResponse({"error": body}, status_code=status)
