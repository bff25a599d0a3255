"""The one place the product leans on a dependency's behaviour rather than its documented API (docs/
architecture.md, "The one dependency behaviour we lean on"): agent/model.py hands `ChatOpenAI` its own
`async_client` (`DictChunkCompletions`), whose streamed chunks are plain dicts. This pins exactly what that
relies on in langchain-openai, so an upgrade that changes it fails here, not in production:

1. `init_chat_model` passes `async_client` and `root_async_client` through to `ChatOpenAI`, which keeps them;
2. a streamed call is exactly one `async_client.create(**payload)` with `stream=True` (and, with
   `stream_usage=True`, `stream_options={"include_usage": True}`), whose result is entered with `async with`
   and iterated with `async for` (what `openai.AsyncStream` offers);
3. the chunks may be dicts: their text, finish reason and usage reach the `AIMessageChunk`s.

The stand-in below is the openai SDK's side (its `chat.completions` resource and the wire's chunk shape), not
our code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
from langchain.chat_models import init_chat_model
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI


class DictStream:
    """What `openai.AsyncStream[object]` is to a caller: an async context manager and an async iterator."""

    def __init__(self, chunks: list[dict[str, Any]]) -> None:
        self.chunks = chunks
        self.closed = False

    async def __aenter__(self) -> DictStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.closed = True

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for chunk in self.chunks:
            yield chunk


class WireCompletions:
    """`chat.completions` answering a streamed call with chat-completion chunks as the wire has them."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.streams: list[DictStream] = []

    async def create(self, **params: Any) -> DictStream:
        self.calls.append(params)
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": params["model"]}
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece},
                                        "finish_reason": None}]} for piece in ("Hello", " there")]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                                         "total_tokens": 7}})
        self.streams.append(DictStream(chunks))
        return self.streams[-1]


async def test_chat_openai_streams_through_the_async_client_it_is_given_and_reads_dict_chunks() -> None:
    completions = WireCompletions()
    root = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-never-used", max_retries=0)
    try:
        model = init_chat_model("qwen-plus", model_provider="openai", base_url="http://127.0.0.1:9/v1",
                                api_key="sk-never-used", stream_usage=True, root_async_client=root,
                                async_client=completions, stream_chunk_timeout=None)
        assert isinstance(model, ChatOpenAI)
        assert model.async_client is completions and model.root_async_client is root  # 1.

        chunks = [chunk async for chunk in model.astream([HumanMessage("hi")], temperature=0.2)]

        assert len(completions.calls) == 1  # 2.
        call = completions.calls[0]
        assert call["stream"] is True and call["stream_options"] == {"include_usage": True}
        assert call["model"] == "qwen-plus" and call["temperature"] == 0.2
        assert call["messages"] == [{"role": "user", "content": "hi"}]
        assert completions.streams[0].closed  # entered and left as a context manager
        assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)  # 3.
        whole = sum(chunks[1:], chunks[0])
        assert whole.text == "Hello there"
        assert whole.response_metadata.get("finish_reason") == "stop"
        assert whole.usage_metadata is not None and (whole.usage_metadata["input_tokens"],
                                                     whole.usage_metadata["output_tokens"]) == (5, 2)
    finally:
        await root.close()
