"""Load: 200 concurrent streams for 60 s against the real server and the emulators.

Zero failed streams, every DingTalk write lands (no data lost), no request task or file descriptor left
behind, and memory that stops growing once caches are warm. This is the suite's one long test;
RELIABILITY_LOAD_SECONDS shortens it for a quick local run.
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import psutil

from bench._harness import chat_body, drive, local_client, timed_stream
from tests.support.app_server import serve_app
from tests.support.reliability import chat, server_request_tasks

STREAMS = int(os.environ.get("RELIABILITY_LOAD_STREAMS", "200"))
SECONDS = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "60"))
USERS = 20  # distinct signed-in users behind the streams (each authorized DingTalk once, up front)
PROMPTS = ("hello there", "Who am I on Alibaba Cloud?", "write")


async def authorize(client: httpx.AsyncClient, base_url: str, jwt: str) -> None:
    """One streamed write: the link it shows is approved as the user would, and the write completes."""
    answer = await chat(client, base_url, jwt, 'Write "setup" to the DingTalk document ID loadsetup')
    assert answer.done and "Wrote" in answer.text, answer.text


async def test_200_streams_for_60_seconds(cloud):
    cloud.reset()
    process = psutil.Process()
    state: dict = {}
    jwts = [cloud.issue_user_jwt(f"load-user-{i}") for i in range(USERS)]
    last_written: dict[str, str] = {}
    with serve_app(cloud.env | {"STREAM_KEEPALIVE_SECONDS": "5", "AUTHORIZATION_TIMEOUT_SECONDS": "30"}, app_state=state) as base_url:
        async with httpx.AsyncClient(trust_env=False, timeout=60) as setup:
            await asyncio.gather(*(authorize(setup, base_url, jwt) for jwt in jwts))
        httpx.post(f"{cloud.url('model')}/emulator/faults", json={"latency_ms": 20}).raise_for_status()
        httpx.post(f"{cloud.url('model')}/emulator/requests/clear").raise_for_status()  # bound emulator memory
        rss_samples: list[tuple[float, float]] = []

        async with local_client(connections=STREAMS + 10) as client:
            async def one_stream(stream: int, n: int) -> None:
                kind = PROMPTS[(stream + n) % len(PROMPTS)]
                doc = f"load{stream}"
                prompt = f'Write "stream {stream} n {n}" to the DingTalk document ID {doc}' if kind == "write" else kind
                timing = await timed_stream(client, f"{base_url}/openai/v1/chat/completions", chat_body(prompt),
                                            {"Authorization": f"Bearer {jwts[stream % USERS]}"})
                if timing.status != 200 or timing.error or not timing.done or not timing.text:
                    raise AssertionError(f"HTTP {timing.status} error={timing.error} done={timing.done}")
                if kind == "write":
                    if "Wrote" not in timing.text:
                        raise AssertionError(f"write not confirmed: {timing.text[-200:]}")
                    last_written[doc] = f"stream {stream} n {n}"

            async def sample_memory() -> None:
                began = time.monotonic()
                while True:
                    rss_samples.append((time.monotonic() - began, process.memory_info().rss / 2**20))
                    await asyncio.sleep(2)

            # One round at full concurrency fills every connection pool and cache to its working size, so what
            # is compared below is growth with the number of requests (a leak), not pools filling up.
            warm = await drive(STREAMS, one_stream, requests_per_user=1)
            assert warm.errors == [], warm.errors[:5]
            fds_before = process.num_fds()
            sampler = asyncio.create_task(sample_memory())
            result = await drive(STREAMS, one_stream, duration_s=SECONDS)
            sampler.cancel()
        httpx.post(f"{cloud.url('model')}/emulator/faults", json={"latency_ms": 0}).raise_for_status()
        await asyncio.sleep(1)
        leftover_tasks = await server_request_tasks(state)
        fds_after = process.num_fds()

        assert result.errors == [], result.errors[:5]
        assert len(result.latencies_s) >= STREAMS, "every stream completed at least one request"
        assert leftover_tasks == []
        assert fds_after <= fds_before + 10, (fds_before, fds_after)
        settled = [rss for t, rss in rss_samples if t >= SECONDS / 3]
        assert max(settled) - min(settled) < 96, rss_samples  # MiB: flat once warm, not growing with requests
        async with httpx.AsyncClient(trust_env=False, verify=cloud.ssl_context()) as check:
            for doc, content in last_written.items():
                stored = (await check.get(f"{cloud.url('dingtalk')}/emulator/documents/{doc}")).json()
                assert stored["content"] == content, doc
        httpx.post(f"{cloud.url('model')}/emulator/requests/clear").raise_for_status()
        print(f"\nload: {len(result.latencies_s)} streams in {result.wall_s:.1f} s "
              f"({result.requests_per_s:.1f}/s), {result.summary}, docs checked {len(last_written)}, "
              f"fds {fds_before}->{fds_after}, rss {rss_samples[0][1]:.0f}->{rss_samples[-1][1]:.0f} MiB")
