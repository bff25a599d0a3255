"""Benchmark 1: our overhead on top of the services we call, at 1 and at 100 concurrent users.

Two requests through the real server (`python app.py`) against the emulators (model time to first token
200 ms, DingTalk 100 ms, identity 50 ms):
- chat: a plain question: one model call. Overhead = first content byte - 200 ms, and total - 200 ms.
- tool: "write ... to the DingTalk document": model call, tool (stored token, identity cached), model call.
  Overhead = total - (200 + 100 + 200) ms.
The same chat request sent straight to the model emulator at the same concurrency is measured side by side:
its time above 200 ms is what the emulator and the client cost by themselves, so "net" = ours - direct.
Every user sends one warm-up request first (JWKS, token caches and connection pools filled); then the figures.

    python -m bench.overhead [--users 1 100] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench._authorize import authorize_users
from bench._cloud import (DINGTALK_LATENCY_MS, MODEL_FIRST_TOKEN_MS, AppServer, Cloud, app_server,
                          local_cloud)
from bench._harness import LoadResult, Report, StreamTiming, Summary, chat_body, drive, local_client, timed_stream

CHAT_PROMPT = "Hello! What can you do for me?"
TOOL_LATENCY_MS = MODEL_FIRST_TOKEN_MS * 2 + DINGTALK_LATENCY_MS


def write_prompt(user: int, n: int) -> str:
    return f'Write "benchmark note {user}-{n}" to the DingTalk document ID bench{user}'


async def stream_load(url: str, users: int, requests_per_user: int, prompt: Any,
                      tokens: list[str] | None, api_key: str | None = None) -> LoadResult:
    """`users` concurrent streams; every stream must end in `[DONE]` without an error, or it counts as failed."""
    async with local_client() as client:
        async def one(user: int, n: int) -> StreamTiming:
            bearer = tokens[user] if tokens else api_key
            timing = await timed_stream(client, url, chat_body(prompt(user, n)),
                                        {"Authorization": f"Bearer {bearer}"})
            if timing.status != 200 or timing.error or not timing.done:
                raise RuntimeError(f"HTTP {timing.status}, error {timing.error}, done {timing.done}")
            return timing

        await drive(users, one, requests_per_user=1)  # warm-up
        return await drive(users, one, requests_per_user=requests_per_user)


def first_content_s(result: LoadResult) -> list[float]:
    return [t.first_content_s for t in result.extras]


def minus(values: list[float], ms: float) -> list[float]:
    return [v - ms / 1000 for v in values]


async def measure_users(report: Report, app: AppServer, cloud: Cloud, tokens: list[str], users: int,
                        requests_per_user: int) -> None:
    model_url = f"{cloud.url('model')}/v1/chat/completions"
    model_key = cloud.env["MODEL_API_KEY"]
    direct = await stream_load(model_url, users, requests_per_user, lambda u, n: CHAT_PROMPT, None, model_key)
    chat = await stream_load(app.chat_url, users, requests_per_user, lambda u, n: CHAT_PROMPT, tokens)
    tool = await stream_load(app.chat_url, users, requests_per_user, write_prompt, tokens)

    direct_first = Summary.of_seconds(minus(first_content_s(direct), MODEL_FIRST_TOKEN_MS))
    chat_first = Summary.of_seconds(minus(first_content_s(chat), MODEL_FIRST_TOKEN_MS))
    chat_total = Summary.of_seconds(minus(chat.latencies_s, MODEL_FIRST_TOKEN_MS))
    direct_total = Summary.of_seconds(minus(direct.latencies_s, MODEL_FIRST_TOKEN_MS))
    tool_total = Summary.of_seconds(minus(tool.latencies_s, TOOL_LATENCY_MS))
    prefix = f"{users} user{'s' if users > 1 else ''}"
    report.figure(f"{prefix}: chat first byte overhead p50 ms", chat_first.p50_ms, str(chat_first))
    report.figure(f"{prefix}: chat first byte overhead p99 ms", chat_first.p99_ms)
    report.figure(f"{prefix}: chat total overhead p50 ms", chat_total.p50_ms, str(chat_total))
    report.figure(f"{prefix}: chat total overhead p99 ms", chat_total.p99_ms)
    report.figure(f"{prefix}: tool total overhead p50 ms", tool_total.p50_ms, str(tool_total))
    report.figure(f"{prefix}: tool total overhead p99 ms", tool_total.p99_ms)
    report.figure(f"{prefix}: direct-to-model first byte above 200 ms, p50 ms", direct_first.p50_ms,
                  f"emulator + client cost alone; {direct_first}")
    report.figure(f"{prefix}: net chat first byte overhead p50 ms (ours - direct)",
                  chat_first.p50_ms - direct_first.p50_ms, "target < 5 ms at 1 user")
    report.figure(f"{prefix}: net chat total overhead p50 ms (ours - direct)",
                  chat_total.p50_ms - direct_total.p50_ms)
    errors = len(direct.errors) + len(chat.errors) + len(tool.errors)
    report.figure(f"{prefix}: failed streams", errors)
    for error in (direct.errors + chat.errors + tool.errors)[:3]:
        report.note(error)


def measure(users_counts: list[int], requests_per_user: int) -> dict[str, Any]:
    report = Report("Benchmark 1: overhead above the emulators' latencies",
                    "streamed chat completions against python app.py; model TTFT 200 ms, DingTalk 100 ms, "
                    "identity 50 ms; overhead = measured - configured latency; direct = same stream straight "
                    f"to the model emulator; {requests_per_user} requests per user after one warm-up each")
    with local_cloud() as cloud:
        tokens = [cloud.user_jwt(f"overhead-user-{i}") for i in range(max(users_counts))]
        asyncio.run(authorize_users(cloud.env, tokens))
        with app_server(cloud.env) as app:
            cloud.set_specified_latencies()
            for users in users_counts:
                asyncio.run(measure_users(report, app, cloud, tokens, users, requests_per_user))
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--requests", type=int, default=20, help="requests per user after the warm-up")
    args = parser.parse_args()
    measure(args.users, args.requests)


if __name__ == "__main__":
    main()
