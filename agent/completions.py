"""Streamed chat completions for `ChatOpenAI`, posted straight over aiohttp.

langchain-openai hands every streamed call to the openai SDK, which builds the request through three client
layers (openai, httpx2, aiohttp) and runs every event through its stream class, and langchain-openai then
awaits each chunk under `asyncio.wait_for` (a task per chunk on Python 3.11). On this product's requests
that cost about 2 ms before the first token reached the user and 3 ms over a short answer (bench/RESULTS.md,
benchmark 1). `JsonChatCompletions` posts the JSON body LangChain built on one shared aiohttp session and
yields each event as a dict, which langchain-openai takes as it is. What the SDK's path guaranteed is kept:
- the same request: the SDK client's own default and auth headers, LangChain's body;
- the same retries: connection errors, timeouts, 408/409/429/5xx, `x-should-retry` and `retry-after` obeyed,
  exponential back-off otherwise;
- the same errors: `openai.APIStatusError` subclasses, `APIConnectionError`, `APITimeoutError`, and `APIError`
  for an error event inside the stream, so langchain-openai and `agent.errors` see no difference;
- a bound on the silence between events (what langchain-openai's `stream_chunk_timeout` did).
Calls that are not streamed go to the SDK as they are. A run's first streamed request may have been posted
before the agent's model node made it (`agent.early_call`); the node's call then takes that response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from agent.early_call import WireRequest, post_or_take
from agent.tokens import TextSink, agent_text_sink, delta_text

if TYPE_CHECKING:
    import aiohttp
    import httpx2
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

# The SDK's retry policy (openai._base_client), so the product behaves as it did through the SDK.
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 60.0
RETRYABLE_STATUSES = frozenset({408, 409, 429})


class JsonChatCompletions:
    """Stands in for `AsyncOpenAI(...).chat.completions` as `ChatOpenAI(async_client=...)`."""

    def __init__(self, client: AsyncOpenAI, session: aiohttp.ClientSession, *, proxy: str | None = None,
                 timeout_seconds: float, max_retries: int) -> None:
        self._sdk = client.chat.completions
        self._session = session
        self._proxy = proxy
        self._url = f"{str(client.base_url).rstrip('/')}/chat/completions"
        # Built once: the SDK's User-Agent and platform headers plus its Authorization header.
        self._headers = {k: v for k, v in {**client.default_headers, **client.auth_headers}.items()
                         if isinstance(v, str)}
        self._timeout_s = timeout_seconds
        self._max_retries = max_retries

    async def create(self, **kwargs: Any) -> Any:
        if not kwargs.get("stream"):
            return await self._sdk.create(**kwargs)
        headers = {**self._headers, **_strings(kwargs.pop("extra_headers", None))}
        params = _strings(kwargs.pop("extra_query", None))
        timeout = kwargs.pop("timeout", None)
        timeout_s = float(timeout) if isinstance(timeout, (int, float)) else self._timeout_s
        extra_body = kwargs.pop("extra_body", None) or {}
        data = json.dumps({**kwargs, **extra_body}, ensure_ascii=False, separators=(",", ":")).encode()
        request = WireRequest(data, tuple(headers.items()), tuple(params.items()), timeout_s)
        response = await post_or_take(request, lambda: self._post(data, headers, params, timeout_s))
        return EventStream(response, self._url, timeout_s, agent_text_sink())

    async def _post(self, data: bytes, headers: dict[str, str], params: dict[str, str],
                    timeout_s: float) -> aiohttp.ClientResponse:
        """POST with the SDK's retries; returns a response whose status is below 400."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        for attempt in range(self._max_retries + 1):
            retries_left = self._max_retries - attempt
            try:
                response = await self._session.post(self._url, data=data, headers=headers, params=params or None,
                                                    proxy=self._proxy, timeout=timeout)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if not retries_left:
                    raise _transport_error(exc, self._url) from None
                log.info("model request failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(retry_delay_seconds(attempt, None))
                continue
            if response.status < 400:
                return response
            payload = await response.read()
            response.release()
            delay = server_delay_seconds(response.headers)
            if retries_left and should_retry(response.status, response.headers, delay):
                log.info("model returned HTTP %s; retrying", response.status)
                await asyncio.sleep(retry_delay_seconds(attempt, delay))
                continue
            raise status_error(response.status, response.headers, payload, self._url)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def __getattr__(self, name: str) -> Any:
        """`with_raw_response`, `parse` and the rest: the SDK's own."""
        return getattr(self._sdk, name)


class EventStream:
    """The events of one streamed completion as dicts; an async context manager, as the SDK's stream is.

    Server-sent events are parsed as the SDK parses them (`data:` lines joined until a blank line, comments
    skipped, `[DONE]` ends the stream). No event for `silence_s` seconds, keep-alive comments or not, is a
    timeout; an event carrying `error` raises `openai.APIError` after the events before it were yielded.
    With a `text_sink` (the run's, for the agent's own calls: `agent.tokens`), each event's text goes to it as
    soon as it is decoded, before LangChain sees any event of the same read.
    """

    def __init__(self, response: aiohttp.ClientResponse, url: str, silence_s: float,
                 text_sink: TextSink | None = None) -> None:
        self._response = response
        self._url = url
        self._silence_s = silence_s
        self._text_sink = text_sink

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """A body read to its end returns its connection to the pool; aiohttp closes one left half-read."""
        self._response.release()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._silence_s
        buffer = b""
        data: list[bytes] = []
        try:
            while True:
                received = await self._read(deadline)
                buffer += received or b"\n\n"  # at the end, a last event without its blank line still counts
                *lines, buffer = buffer.split(b"\n")
                events, done = _complete_events(lines, data)
                payloads, error = await self._decode_delivering_text(events)
                for payload in payloads:
                    yield payload
                if events:
                    deadline = loop.time() + self._silence_s
                if error is not None:
                    raise error
                if done:
                    await self._drain(deadline)
                    return
                if not received:
                    return
        finally:
            await self.aclose()

    async def _read(self, deadline: float) -> bytes:
        import aiohttp

        try:
            async with asyncio.timeout_at(deadline):
                return await self._response.content.readany()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc, self._url) from None

    async def _drain(self, deadline: float) -> None:
        """Read past `[DONE]` to the end of the body, so the connection can serve the next call."""
        import aiohttp

        try:
            async with asyncio.timeout_at(deadline):
                await self._response.content.read()
        except (TimeoutError, aiohttp.ClientError):
            pass  # the connection is closed instead of reused

    async def _decode_delivering_text(self, events: list[bytes]
                                      ) -> tuple[list[dict[str, Any]], Exception | None]:
        """Decode `events` in order, handing each one's text to the text sink and letting the response writer
        send it at once. Stops at the first event that fails or carries an error and returns that error with
        the events before it, which are yielded first."""
        import openai

        payloads: list[dict[str, Any]] = []
        for event in events:
            try:
                payloads.append(self._decode(event))
            except (ValueError, openai.APIError) as exc:
                return payloads, exc
            if self._text_sink is not None and (text := delta_text(payloads[-1])):
                self._text_sink(text)
                await asyncio.sleep(0)
        return payloads, None

    def _decode(self, event: bytes) -> dict[str, Any]:
        import openai

        payload = json.loads(event)
        if isinstance(payload, dict) and payload.get("error"):
            error = payload["error"]
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(message if isinstance(message, str) and message
                                  else "An error occurred during streaming", _request(self._url), body=error)
        return payload


def _complete_events(lines: list[bytes], data: list[bytes]) -> tuple[list[bytes], bool]:
    """The events these whole lines complete, and whether `[DONE]` came. `data` holds the `data:` lines of an
    event still open; it carries over to the next read. Parsed as the SDK parses: `data:` lines are joined
    until a blank line, comments and other fields are skipped."""
    events: list[bytes] = []
    for line in lines:
        line = line.removesuffix(b"\r")
        if line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif not line and data:
            event = b"\n".join(data)
            data.clear()
            if event.startswith(b"[DONE]"):
                return events, True
            events.append(event)
    return events, False


def should_retry(status: int, headers: Mapping[str, str], delay: float | None) -> bool:
    """The SDK's rule: obey `x-should-retry`, never wait past MAX_RETRY_AFTER_S, retry 408/409/429/5xx."""
    if delay is not None and math.isfinite(delay) and delay > MAX_RETRY_AFTER_S:
        return False
    verdict = headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return status in RETRYABLE_STATUSES or status >= 500


def server_delay_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds; HTTP dates are not honoured), when given."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            return float(headers[name]) / divisor
        except (KeyError, ValueError):
            continue
    return None


def retry_delay_seconds(attempt: int, server_delay: float | None) -> float:
    """The server's delay when it gave one up to MAX_RETRY_AFTER_S; otherwise 0.5 s doubling per attempt up to
    8 s, less up to a quarter at random (the SDK's jitter)."""
    if server_delay is not None and 0 < server_delay <= MAX_RETRY_AFTER_S:
        return server_delay
    return min(INITIAL_RETRY_DELAY_S * 2.0 ** min(attempt, 16), MAX_RETRY_DELAY_S) * (1 - 0.25 * random.random())


def status_error(status: int, headers: Mapping[str, str], payload: bytes, url: str) -> Exception:
    """The SDK's exception for an error status, with the SDK's message and `body` (the `error` object)."""
    import httpx2
    import openai

    try:
        body: Any = json.loads(payload)
    except ValueError:
        body = payload.decode(errors="replace")
    error = body.get("error", body) if isinstance(body, dict) else body
    kinds: dict[int, type[openai.APIStatusError]] = {
        400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
        404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
        429: openai.RateLimitError}
    kind = kinds.get(status) or (openai.InternalServerError if status >= 500 else openai.APIStatusError)
    response = httpx2.Response(status, headers=list(headers.items()), content=payload, request=_request(url))
    return kind(f"Error code: {status} - {body}", response=response, body=error)


def _transport_error(exc: BaseException, url: str) -> Exception:
    """A timeout (ours or aiohttp's) or any other aiohttp failure, as the SDK's exception."""
    import openai

    if isinstance(exc, TimeoutError):
        return openai.APITimeoutError(request=_request(url))
    return openai.APIConnectionError(request=_request(url))


def _request(url: str) -> httpx2.Request:
    """What the SDK's exceptions carry as `.request`."""
    import httpx2

    return httpx2.Request("POST", url)


def _strings(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (values or {}).items() if v is not None}
