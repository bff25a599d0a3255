"""Benchmark 4: isolation. Other users' latency while 20 users sit waiting on an authorization link.

Through python app.py (model TTFT 200 ms, DingTalk 100 ms, identity 50 ms): 10 signed-in users each send
chat and caller-identity questions back to back, first with nobody waiting, then while 20 other users have
each asked to write to DingTalk without having authorized, so their streams stay open waiting for consent
(the server polls Agent Identity for them). Then again with nobody waiting, so drift shows. Target: the
p50 while waiting within 5% of the p50 without.

    python -m bench.isolation [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from bench._cloud import app_server, local_cloud
from bench._harness import (Report, StreamTiming, Summary, chat_body, drive, local_client, parse_sse_line,
                            timed_stream)

ACTIVE_USERS = 10
WAITING_USERS = 20


async def active_load(chat_url: str, jwts: list[str], requests_per_user: int) -> Summary:
    prompts = ("hello there", "Who am I on Alibaba Cloud?")
    async with local_client() as client:
        async def one(user: int, n: int) -> None:
            timing = await timed_stream(client, chat_url, chat_body(prompts[(user + n) % 2]),
                                        {"Authorization": f"Bearer {jwts[user]}"})
            if timing.error or not timing.done:
                raise RuntimeError(str(timing.error))
        result = await drive(len(jwts), one, requests_per_user=requests_per_user)
    if result.errors:
        raise RuntimeError(result.errors[0])
    return result.summary


async def wait_on_link(client: httpx.AsyncClient, chat_url: str, jwt: str, doc: str, shown: asyncio.Event) -> None:
    """One user who asks to write but never authorizes: set `shown` once the link arrives, then keep the
    stream open (the server keeps polling for consent) until cancelled. Any other ending is a failure."""
    timing = StreamTiming()
    async with client.stream("POST", chat_url, json=chat_body(f'Write "pending" to the DingTalk document ID {doc}'),
                             headers={"Authorization": f"Bearer {jwt}"}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"waiting user got HTTP {response.status_code}")
        async for line in response.aiter_lines():
            parse_sse_line(line, timing)
            if any(e.get("type") == "authorization_required" for e in timing.events):
                shown.set()
    raise RuntimeError(f"a waiting user's stream ended: {timing.error or timing.text[-200:]!r}")


async def with_waiting_users(chat_url: str, active: list[str], waiting: list[str], requests: int,
                             polls: Callable[[], int]) -> tuple[Summary, int]:
    """The active users' p50 while every waiting user has its link and is being polled for; also returns how
    many consent polls the server made meanwhile (so the waiting load is real)."""
    async with local_client() as client:
        shown = [asyncio.Event() for _ in waiting]
        waiters = [asyncio.create_task(wait_on_link(client, chat_url, jwt, f"wait{i}", shown[i]))
                   for i, jwt in enumerate(waiting)]
        try:
            every_link = asyncio.gather(*(event.wait() for event in shown))
            done, _ = await asyncio.wait([asyncio.ensure_future(every_link), *waiters], timeout=60,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done & set(waiters):
                task.result()  # a waiter that ended early: raise why
            if not all(event.is_set() for event in shown):
                raise RuntimeError("not every waiting user was shown an authorization link within 60 s")
            await asyncio.sleep(1)  # every waiter is now in its polling loop
            calls_before = polls()
            summary = await active_load(chat_url, active, requests)
            calls_during = polls() - calls_before
            if any(task.done() for task in waiters):
                raise RuntimeError("a waiting user's stream ended while the others were measured")
            return summary, calls_during
        finally:
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


def measure(requests: int) -> dict[str, Any]:
    report = Report("Benchmark 4: isolation from users waiting on an authorization link",
                    f"{ACTIVE_USERS} active users x {requests} requests (chat / caller identity) through "
                    f"python app.py; baseline, then with {WAITING_USERS} users' streams open waiting for "
                    "consent, then baseline again")
    with local_cloud() as cloud:
        active = [cloud.user_jwt(f"active-{i}") for i in range(ACTIVE_USERS)]
        waiting = [cloud.user_jwt(f"waiting-{i}") for i in range(WAITING_USERS)]
        with app_server(cloud.env) as app:
            cloud.set_specified_latencies()
            asyncio.run(active_load(app.chat_url, active, 2))  # warm-up
            before = asyncio.run(active_load(app.chat_url, active, requests))
            polls = lambda: cloud.calls("agent_identity").get("GetResourceOAuth2Token", 0)  # noqa: E731
            during, identity_calls = asyncio.run(with_waiting_users(app.chat_url, active, waiting, requests, polls))
            after = asyncio.run(active_load(app.chat_url, active, requests))
    baseline = (before.p50_ms + after.p50_ms) / 2
    report.figure("p50 ms, nobody waiting (before)", before.p50_ms, str(before))
    report.figure("p50 ms, 20 users waiting", during.p50_ms, str(during))
    report.figure("GetResourceOAuth2Token polls while measured", identity_calls,
                  "the waiting users' consent polls (active users make none): the waiting load was real")
    report.figure("p50 ms, nobody waiting (after)", after.p50_ms, str(after))
    report.figure("p50 change while waiting, %", (during.p50_ms / baseline - 1) * 100, "target within 5%")
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    measure(parser.parse_args().requests)


if __name__ == "__main__":
    main()
