"""Benchmark 8: saturation. 200 users waiting for consent on one instance, over HTTPS.

Through python app.py (emulators in their own process, HTTPS with their CA in SSL_CERT_FILE; Agent Identity
and STS 50 ms, DingTalk 100 ms, the model without added latency, so the first byte is the server's own
time): one other user sends chats one after another and its time to the first streamed byte is measured,
first with nobody waiting, then while 200 users have each asked to write to DingTalk without authorizing,
so their streams stay open and the server polls Agent Identity for each of them. Meanwhile, with no other
load, the app process's CPU (psutil) and the Agent Identity calls it makes (the emulator's counters) are
measured over `--window` seconds once every waiting flow has backed off to its steady interval. Targets:
the other user's first-byte p99 within 1.5x its idle value; app CPU under 0.3 core; the calls per second per
waiting user are reported.

    python -m bench.saturation [--waiting 200] [--requests 100] [--window 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import psutil

from bench._cloud import AppServer, Cloud, app_server, local_cloud
from bench._harness import Report, Summary, chat_body, local_client, timed_stream
from bench.isolation import wait_on_link

SETTLE_S = 12.0  # each waiting user's poller calls every 2 s from its start (identity/consent_waits.py)
METHOD = ("python app.py against the emulators over HTTPS (identity+STS 50 ms, DingTalk 100 ms, model 0 ms); "
          "one other user's chats one after another, first byte = first streamed body byte; idle, then with "
          "N users' streams open waiting for consent; app CPU = psutil cpu_times of the app process over a "
          "window with only the waiting users, after their polls settled")


async def first_bytes(app: AppServer, jwt: str, requests: int) -> Summary:
    """One user's chats, one after another: the time to each stream's first byte."""
    samples = []
    async with local_client(connections=4) as client:
        for _ in range(requests):
            timing = await timed_stream(client, app.chat_url, chat_body("hello there"),
                                        {"Authorization": f"Bearer {jwt}"})
            if timing.error or not timing.done:
                raise RuntimeError(f"the other user's chat failed: {timing.error}")
            samples.append(timing.first_byte_s)
    return Summary.of_seconds(samples)


def identity_calls(cloud: Cloud) -> int:
    return sum(cloud.calls("agent_identity").values())


async def while_waiting(app: AppServer, cloud: Cloud, other: str, waiting: list[str], requests: int,
                        window_s: float) -> dict[str, Any]:
    """Open every waiting user's stream, let the polls settle, measure CPU and calls, then the other user."""
    server = psutil.Process(app.process.pid)
    async with local_client(connections=len(waiting) + 10) as client:
        shown = [asyncio.Event() for _ in waiting]
        waiters = [asyncio.create_task(wait_on_link(client, app.chat_url, jwt, f"sat{i}", shown[i]))
                   for i, jwt in enumerate(waiting)]
        try:
            every_link = asyncio.ensure_future(asyncio.gather(*(event.wait() for event in shown)))
            done, _ = await asyncio.wait([every_link, *waiters], timeout=120,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done & set(waiters):
                task.result()  # a waiter that ended early: raise why
            if not all(event.is_set() for event in shown):
                raise RuntimeError("not every waiting user was shown an authorization link within 120 s")
            await asyncio.sleep(SETTLE_S)
            cpu_before, calls_before, began = server.cpu_times(), identity_calls(cloud), time.perf_counter()
            await asyncio.sleep(window_s)
            wall = time.perf_counter() - began
            cpu_after, calls_after = server.cpu_times(), identity_calls(cloud)
            during = await first_bytes(app, other, requests)
            if any(task.done() for task in waiters):
                raise RuntimeError("a waiting user's stream ended while the others were measured")
        finally:
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
    cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return {"during": during, "cores": cpu_s / wall, "calls_per_s": (calls_after - calls_before) / wall}


def measure(waiting_users: int, requests: int, window_s: float) -> dict[str, Any]:
    report = Report(f"Benchmark 8: saturation, {waiting_users} users waiting for consent on one instance "
                    "(HTTPS)", METHOD)
    with local_cloud() as cloud:
        other = cloud.user_jwt("saturation-other")
        waiting = [cloud.user_jwt(f"saturation-waiting-{i}") for i in range(waiting_users)]
        # The waiting users and the one measured make waiting_users + 1 requests at once: above the default
        # MAX_CONCURRENT_REQUESTS (200, AgentRun's highest instance concurrency) when 200 wait.
        limit = str(max(200, waiting_users + 16))
        with app_server(cloud.env, extra_env={"AUTHORIZATION_TIMEOUT_SECONDS": "900",
                                              "MAX_CONCURRENT_REQUESTS": limit}) as app:
            cloud.set_specified_latencies()
            cloud.set_faults("model", latency_ms=0)  # the first byte is then the server's own time
            asyncio.run(first_bytes(app, other, 10))  # warm-up
            idle = asyncio.run(first_bytes(app, other, requests))
            loaded = asyncio.run(while_waiting(app, cloud, other, waiting, requests, window_s))
    during: Summary = loaded["during"]
    report.figure("first byte p99 ms, nobody waiting", idle.p99_ms, str(idle))
    report.figure(f"first byte p99 ms, {waiting_users} waiting", during.p99_ms, str(during))
    report.figure("p99 ratio waiting / idle", during.p99_ms / idle.p99_ms, "target <= 1.5")
    report.figure("app CPU, cores, while they wait", loaded["cores"], f"over {window_s:.0f} s; target < 0.3")
    report.figure("Agent Identity calls/s", loaded["calls_per_s"], "all waiting users together")
    report.figure("Agent Identity calls/s per waiting user", loaded["calls_per_s"] / waiting_users,
                  "one call every 2 s per waiting user, alternately its vault and its session")
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    measure(args.waiting, args.requests, args.window)


if __name__ == "__main__":
    main()
