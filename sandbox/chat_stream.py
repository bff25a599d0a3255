"""Reading a streamed chat completion as a client does: the JSON chunks of its server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

DATA, DONE = "data: ", "data: [DONE]"


async def chat_chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each `data:` chunk of `response` as JSON, up to `[DONE]`; comments (keep-alives) are skipped."""
    async for line in response.aiter_lines():
        if line == DONE:
            return
        if line.startswith(DATA):
            yield json.loads(line[len(DATA):])
