"""The model's chat-completions endpoint as `ChatOpenAI` uses it, minus the SDK's typed round trip.

For every streamed call the openai SDK walks the request through its TypedDict transform (each message and
tool schema checked against every member of its union type) and builds a pydantic `ChatCompletionChunk` for
each event, which langchain-openai turns straight back into a dict (it accepts dict chunks as they are).
Measured on this product's requests, that round trip is the largest cost per streamed token and about a
millisecond before the first one (bench/RESULTS.md, benchmark 1). `JsonChatCompletions` posts the JSON body
LangChain built and yields the events' JSON as dicts, through the SDK client's own `post`: authentication,
retries, timeouts, HTTP and in-stream errors stay the SDK's. Calls that are not streamed go to the SDK as
they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import AsyncOpenAI, RequestOptions

# `create` keyword arguments that are request options for the SDK, not fields of the JSON body.
_OPTION_KEYS = {"extra_headers": "headers", "extra_query": "params", "extra_body": "extra_json",
                "timeout": "timeout"}


class JsonChatCompletions:
    """Stands in for `AsyncOpenAI(...).chat.completions` as `ChatOpenAI(async_client=...)`."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client
        self._sdk = client.chat.completions

    async def create(self, **kwargs: Any) -> Any:
        if not kwargs.get("stream"):
            return await self._sdk.create(**kwargs)
        from openai import AsyncStream, NotGiven

        options: RequestOptions = {"security": {"bearer_auth": True}}
        for key, option in _OPTION_KEYS.items():
            if key not in kwargs:
                continue
            value = kwargs.pop(key)
            # As the SDK's `create`: unset extras are left out; an explicit `timeout=None` means no timeout.
            if (value is not None or key == "timeout") and not isinstance(value, NotGiven):
                options[option] = value  # type: ignore[literal-required]
        return await self._client.post("/chat/completions", body=kwargs, cast_to=object, options=options,
                                       stream=True, stream_cls=AsyncStream[object])

    def __getattr__(self, name: str) -> Any:
        """`with_raw_response`, `parse` and the rest: the SDK's own."""
        return getattr(self._sdk, name)
