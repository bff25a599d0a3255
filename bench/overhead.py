"""Benchmark 1: our overhead on top of the services we call, at 1 and at 100 concurrent users.

Two requests through the real server (`python app.py`) against the emulators (model time to first token
200 ms, DingTalk 100 ms, identity 50 ms):
- chat: a plain question: one model call. Overhead = first content byte - 200 ms, and total - 200 ms.
- tool: "write ... to the DingTalk document": model call, tool (stored token, identity cached), model call.
  Overhead = total - (200 + 100 + 200) ms.
The request the agent sends the model for that chat (system prompt and tool schemas included) is sent
straight to the model emulator alongside: its time above 200 ms is what the emulator and the client cost by
themselves, so "net" = ours - direct. The two chat series are interleaved (each user alternates a direct and
an "ours" stream, swapping the order every pair) so that drift on a shared machine hits both alike; 20
samples gave p50s that moved by ~1 ms between runs, hence 200 at 1 user. Every user sends one warm-up pair
first (JWKS, token caches and connection pools filled).

    python -m bench.overhead [--users 1 100] [--requests N] [--tool-requests N] [--runs N]

`BENCH_APP_ROOT=<another checkout>` serves that checkout's app.py instead (side-by-side comparisons).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

import psutil

from bench._authorize import authorize_users
from bench._cloud import (DINGTALK_LATENCY_MS, MODEL_FIRST_TOKEN_MS, AppServer, Cloud, app_server,
                          local_cloud)
from bench._harness import LoadResult, Report, StreamTiming, Summary, chat_body, drive, local_client, timed_stream

CHAT_PROMPT = "Hello! What can you do for me?"
TOOL_LATENCY_MS = MODEL_FIRST_TOKEN_MS * 2 + DINGTALK_LATENCY_MS
SAMPLES_AT_ONE_USER = 200  # chat streams per series at 1 user: a p50 stable to a few tenths of a ms
REQUESTS_UNDER_LOAD = 20  # per user at more than one user (100 users: 2,000 streams per series)
TOOL_REQUESTS = 20  # tool turns per user: each takes half a second


def default_requests(users: int) -> int:
    return SAMPLES_AT_ONE_USER if users == 1 else REQUESTS_UNDER_LOAD


def write_prompt(user: int, n: int) -> str:
    return f'Write "benchmark note {user}-{n}" to the DingTalk document ID bench{user}'


async def checked_stream(client: Any, url: str, body: dict[str, Any], bearer: str) -> StreamTiming:
    """One stream; it must end in `[DONE]` without an error, or it counts as failed."""
    timing = await timed_stream(client, url, body, {"Authorization": f"Bearer {bearer}"})
    if timing.status != 200 or timing.error or not timing.done:
        raise RuntimeError(f"HTTP {timing.status}, error {timing.error}, done {timing.done}")
    return timing


async def agent_model_request(client: Any, app: AppServer, cloud: Cloud, bearer: str) -> dict[str, Any]:
    """The body the agent sends the model for CHAT_PROMPT, as the model emulator received it.

    The direct series sends exactly this (system prompt and tool schemas included): the emulator takes
    0.1-0.3 ms longer over it than over the bare question, and that is the emulator's time, not ours.
    """
    await checked_stream(client, app.chat_url, chat_body(CHAT_PROMPT), bearer)
    received = await client.get(f"{cloud.url('model')}/emulator/requests")
    received.raise_for_status()
    return received.json()[-1]


async def paired_chat_load(app: AppServer, cloud: Cloud, tokens: list[str], users: int,
                           requests_per_user: int) -> tuple[list[StreamTiming], list[StreamTiming], LoadResult, float]:
    """`users` concurrent loops, each sending pairs: the agent's own model request straight to the model
    emulator, and the chat through the app, in alternating order. Returns the direct and our timings
    (successful pairs only), the load result, and the app's CPU seconds per chat after the warm-up."""
    server = psutil.Process(app.process.pid)
    model_url = f"{cloud.url('model')}/v1/chat/completions"
    model_key = cloud.env["MODEL_API_KEY"]
    async with local_client() as client:
        direct_body = await agent_model_request(client, app, cloud, tokens[0])
        ours_body = chat_body(CHAT_PROMPT)

        async def pair(user: int, n: int) -> tuple[StreamTiming, StreamTiming]:
            if n % 2:
                ours = await checked_stream(client, app.chat_url, ours_body, tokens[user])
                direct = await checked_stream(client, model_url, direct_body, model_key)
            else:
                direct = await checked_stream(client, model_url, direct_body, model_key)
                ours = await checked_stream(client, app.chat_url, ours_body, tokens[user])
            return direct, ours

        await drive(users, pair, requests_per_user=1)  # warm-up
        cpu_before = sum(server.cpu_times()[:2])
        result = await drive(users, pair, requests_per_user=requests_per_user)
        cpu_per_chat = (sum(server.cpu_times()[:2]) - cpu_before) / max(1, users * requests_per_user)
    return [d for d, _ in result.extras], [o for _, o in result.extras], result, cpu_per_chat


async def tool_load(app: AppServer, tokens: list[str], users: int, requests_per_user: int) -> LoadResult:
    async with local_client() as client:
        async def one(user: int, n: int) -> StreamTiming:
            return await checked_stream(client, app.chat_url, chat_body(write_prompt(user, n)), tokens[user])

        await drive(users, one, requests_per_user=1)  # warm-up
        return await drive(users, one, requests_per_user=requests_per_user)


def above(timings: list[StreamTiming], attribute: str, ms: float) -> Summary:
    """The series' `attribute` (seconds since the request) minus the configured latency `ms`."""
    return Summary.of_seconds([getattr(t, attribute) - ms / 1000 for t in timings])


async def measure_users(report: Report, app: AppServer, cloud: Cloud, tokens: list[str], users: int,
                        requests_per_user: int, tool_requests: int, runs: int) -> None:
    prefix = f"{users} user{'s' if users > 1 else ''}"
    net_first: list[float] = []
    for run in range(1, runs + 1):
        direct, chat, load, cpu_per_chat = await paired_chat_load(app, cloud, tokens, users, requests_per_user)
        direct_first = above(direct, "first_content_s", MODEL_FIRST_TOKEN_MS)
        chat_first = above(chat, "first_content_s", MODEL_FIRST_TOKEN_MS)
        chat_total = above(chat, "total_s", MODEL_FIRST_TOKEN_MS)
        direct_total = above(direct, "total_s", MODEL_FIRST_TOKEN_MS)
        net_first.append(chat_first.p50_ms - direct_first.p50_ms)
        name = prefix if runs == 1 else f"{prefix}, run {run}"
        report.figure(f"{name}: chat first byte overhead p50 ms", chat_first.p50_ms, str(chat_first))
        report.figure(f"{name}: chat first byte overhead p99 ms", chat_first.p99_ms)
        report.figure(f"{name}: chat total overhead p50 ms", chat_total.p50_ms, str(chat_total))
        report.figure(f"{name}: chat total overhead p99 ms", chat_total.p99_ms)
        report.figure(f"{name}: direct-to-model first byte above 200 ms, p50 ms", direct_first.p50_ms,
                      f"emulator + client cost alone, interleaved with ours; {direct_first}")
        report.figure(f"{name}: net chat first byte overhead p50 ms (ours - direct)", net_first[-1],
                      "target < 5 ms at 1 user")
        report.figure(f"{name}: net chat total overhead p50 ms (ours - direct)",
                      chat_total.p50_ms - direct_total.p50_ms)
        report.figure(f"{name}: app CPU per chat ms", cpu_per_chat * 1000,
                      "user + system CPU of the app process over the series, after the warm-up")
        report.figure(f"{name}: failed stream pairs", len(load.errors))
        for error in load.errors[:3]:
            report.note(error)
    if runs > 1:
        report.figure(f"{prefix}: net chat first byte overhead p50 ms, median of {runs} runs",
                      statistics.median(net_first),
                      f"spread {min(net_first):.2f} .. {max(net_first):.2f} ms; target < 5 ms at 1 user")
    if tool_requests:
        tool = await tool_load(app, tokens, users, tool_requests)
        tool_total = Summary.of_seconds([t.total_s - TOOL_LATENCY_MS / 1000 for t in tool.extras])
        report.figure(f"{prefix}: tool total overhead p50 ms", tool_total.p50_ms, str(tool_total))
        report.figure(f"{prefix}: tool total overhead p99 ms", tool_total.p99_ms)
        report.figure(f"{prefix}: failed tool streams", len(tool.errors))
        for error in tool.errors[:3]:
            report.note(error)


def measure(users_counts: list[int], requests_per_user: int | None = None, *, tool_requests: int = TOOL_REQUESTS,
            runs: int = 1) -> dict[str, Any]:
    """`requests_per_user` None: 200 chat pairs at 1 user, 20 per user above that."""
    counts = {users: requests_per_user or default_requests(users) for users in users_counts}
    shown = ", ".join(f"{n} at {users} user{'s' if users > 1 else ''}" for users, n in counts.items())
    report = Report("Benchmark 1: overhead above the emulators' latencies",
                    "streamed chat completions against python app.py; model TTFT 200 ms, DingTalk 100 ms, "
                    "identity 50 ms; overhead = measured - configured latency; direct = the agent's own model "
                    "request straight to the model emulator, interleaved with ours; chat pairs per user after "
                    f"one warm-up: {shown}; {tool_requests} tool turns per user; {runs} run(s)")
    with local_cloud() as cloud:
        tokens = [cloud.user_jwt(f"overhead-user-{i}") for i in range(max(users_counts))]
        asyncio.run(authorize_users(cloud.env, tokens))
        with app_server(cloud.env) as app:
            cloud.set_specified_latencies()
            for users, requests in counts.items():
                asyncio.run(measure_users(report, app, cloud, tokens, users, requests, tool_requests, runs))
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--requests", type=int, default=None,
                        help=f"chat pairs per user after the warm-up (default {SAMPLES_AT_ONE_USER} at 1 user, "
                             f"{REQUESTS_UNDER_LOAD} above)")
    parser.add_argument("--tool-requests", type=int, default=TOOL_REQUESTS, help="tool turns per user (0: none)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the chat measurement; report the spread")
    args = parser.parse_args()
    measure(args.users, args.requests, tool_requests=args.tool_requests, runs=args.runs)


if __name__ == "__main__":
    main()
