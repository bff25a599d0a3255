"""Benchmarks 5 and 6: cold start against the bare import time, memory after 1,000 requests, zip size.

- Bare import: a fresh `python -c` importing the dependencies a first request needs (FastAPI, Hypercorn,
  LangChain's agent, langchain-openai, the Alibaba SDK clients), timed inside that process.
- Cold start: `python app.py` from `Popen` to the first `/health` 200 and to the first chat answered
  (bench/cold_start.py's `one_run`), median of 3; ratio = cold start / bare import.
- Memory: the server's RSS after start, after its first chat, then after 1,000 more requests (20 at a time,
  chat and caller-identity questions): growth beyond the caches' bounds would show here.
- Zip: `scripts/package` into a temporary directory; sizes of the zip and of its unpacked contents. The cold
  start from the zip itself, on Python 3.12 and a read-only folder, is `bench.cold_start --zip`.

    python -m bench.footprint [--requests 1000] [--skip-zip]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
from typing import Any

from bench._cloud import PYTHON, ROOT, app_server, clean_env, local_cloud
from bench._harness import Report, chat_body, drive, local_client, rss_mb, timed_stream
from bench.cold_start import one_run, unpacked_zip

IMPORTS = ("fastapi", "hypercorn", "langchain.agents", "langchain_openai",
           "alibabacloud_agentidentitydata20251127.client", "alibabacloud_sts20150401.client",
           "alibabacloud_credentials.client", "jwt", "httpx")


def bare_import_s(runs: int = 3) -> float:
    code = ("import time; t = time.perf_counter()\n" + "".join(f"import {m}\n" for m in IMPORTS)
            + "print(time.perf_counter() - t)")
    times = [float(subprocess.run([PYTHON, "-c", code], env=clean_env(), cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout) for _ in range(runs)]
    return statistics.median(times)


async def many_requests(chat_url: str, jwt: str, count: int, concurrency: int = 20) -> int:
    prompts = ("hello there", "Who am I on Alibaba Cloud?")
    async with local_client() as client:
        async def one(user: int, n: int) -> None:
            timing = await timed_stream(client, chat_url, chat_body(prompts[(user + n) % 2]),
                                        {"Authorization": f"Bearer {jwt}"})
            if timing.error or not timing.done:
                raise RuntimeError(str(timing.error))
        result = await drive(concurrency, one, requests_per_user=count // concurrency)
    return len(result.errors)


def zip_sizes() -> tuple[float, float]:
    with unpacked_zip() as package:
        return package.zip_mib, package.unpacked_mib


def measure(requests: int, with_zip: bool, starts: int = 3) -> dict[str, Any]:
    """`starts` fresh processes (and fresh interpreters for the bare import); `requests` after 20 first."""
    report = Report("Benchmarks 5 and 6: cold start, memory, package size", __doc__.split("\n\n")[1].strip())
    imports = bare_import_s(starts)
    with local_cloud() as cloud:
        runs = [one_run(cloud) for _ in range(starts)]
        with app_server(cloud.env) as app:
            pid = app.process.pid
            rss_start = rss_mb(pid)
            jwt = cloud.user_jwt("footprint-user")
            asyncio.run(many_requests(app.chat_url, jwt, 20))
            rss_first = rss_mb(pid)
            failures = asyncio.run(many_requests(app.chat_url, jwt, requests))
            rss_after = rss_mb(pid)
    health = statistics.median(r["health_s"] for r in runs)
    first_chat = statistics.median(r["first_chat_s"] for r in runs)
    report.figure("bare import of the dependencies, s", imports, f"median of {starts} fresh interpreters")
    report.figure("process start -> first /health, s", health, f"median of {starts}")
    report.figure("process start -> first chat answered, s", first_chat, f"median of {starts}")
    report.figure("cold start (first chat) / bare import", first_chat / imports)
    report.figure("RSS after start, MiB", rss_start)
    report.figure("RSS after 20 requests, MiB", rss_first)
    report.figure(f"RSS after {requests} more requests, MiB", rss_after, f"{failures} failed requests")
    if with_zip:
        zip_mb, python_mb = zip_sizes()
        report.figure("zip size, MiB", zip_mb)
        report.figure("zip unpacked (with its bytecode), MiB", python_mb)
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--skip-zip", action="store_true")
    args = parser.parse_args()
    measure(args.requests, not args.skip_zip)


if __name__ == "__main__":
    main()
