"""Benchmark 3: Agent Identity calls per tool call in a steady session (the emulator's call counters).

One signed-in user, DingTalk already authorized, through the real server: after one warm-up of each tool,
the counters are reset and the user makes N more tool calls (alternating DingTalk writes and caller-identity
questions). Calls per tool call = every Agent Identity call counted / N. Target: at most 0.05.

    python -m bench.identity_calls [--tool-calls 100]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench._authorize import authorize_users
from bench._cloud import app_server, local_cloud
from bench._harness import Report, chat_body, local_client, timed_stream

IDENTITY_QUESTION = "Who am I on Alibaba Cloud?"


async def session(chat_url: str, jwt: str, tool_calls: int, start: int = 0) -> None:
    async with local_client() as client:
        for n in range(start, start + tool_calls):
            prompt = (IDENTITY_QUESTION if n % 2 else
                      f'Write "steady session note {n}" to the DingTalk document ID steady1')
            timing = await timed_stream(client, chat_url, chat_body(prompt), {"Authorization": f"Bearer {jwt}"})
            if not timing.done or timing.error or not any(e.get("type") == "tool_finished" for e in timing.events):
                raise RuntimeError(f"tool call {n} did not complete: {timing.error or timing.text[-200:]}")


def measure(tool_calls: int) -> dict[str, Any]:
    report = Report("Benchmark 3: identity calls per tool call, steady session",
                    "one user through python app.py; warm-up of both tools, counters reset, then N tool calls "
                    "alternating DingTalk write / STS caller identity; Agent Identity emulator call counter / N")
    with local_cloud() as cloud:
        jwt = cloud.user_jwt("steady-user")
        asyncio.run(authorize_users(cloud.env, [jwt]))
        with app_server(cloud.env) as app:
            asyncio.run(session(app.chat_url, jwt, 2))
            cloud.reset()
            asyncio.run(session(app.chat_url, jwt, tool_calls, start=2))
            calls = cloud.calls("agent_identity")
    total = sum(calls.values())
    report.figure("tool calls", tool_calls)
    report.figure("Agent Identity calls", total, ", ".join(f"{k}={v}" for k, v in sorted(calls.items())) or "none")
    report.figure("identity calls per tool call", total / tool_calls, "target <= 0.05")
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool-calls", type=int, default=100)
    measure(parser.parse_args().tool_calls)


if __name__ == "__main__":
    main()
