"""What every benchmark shares: percentiles, a concurrent async load driver, stream timing, RSS, and a printer.

Each benchmark prints every figure next to a sentence saying how it was measured, so a number copied out of
a terminal still says what it means. Absolute times drift on shared machines; comparisons are made side by
side in one run and reported as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil


# --- statistics ---------------------------------------------------------------------------------------------

def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Latency percentiles of one series, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of_seconds(cls, values: Iterable[float]) -> Summary:
        ms = [v * 1000 for v in values]
        if not ms:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), sum(ms) / len(ms), max(ms))

    def __str__(self) -> str:
        return f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms (n={self.n}, max {self.max_ms:.1f} ms)"


# --- load driver --------------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    """What a load run produced: per-request latencies of the successes, the failures, and the wall time."""

    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    extras: list[Any] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else math.nan

    @property
    def summary(self) -> Summary:
        return Summary.of_seconds(self.latencies_s)


# One request of user `user` (0-based), its `n`-th (0-based); may return anything worth keeping (kept in extras).
RequestFn = Callable[[int, int], Awaitable[Any]]


async def drive(users: int, one_request: RequestFn, *, requests_per_user: int = 1,
                duration_s: float | None = None, max_errors_kept: int = 50) -> LoadResult:
    """Run `users` concurrent loops of `one_request`: each makes `requests_per_user` calls, or keeps calling
    until `duration_s` has passed. A start barrier makes every user begin together."""
    result = LoadResult()
    start_gate = asyncio.Event()
    deadline: list[float] = []

    async def user_loop(user: int) -> None:
        await start_gate.wait()
        n = 0
        while (n < requests_per_user) if duration_s is None else (time.perf_counter() < deadline[0]):
            began = time.perf_counter()
            try:
                extra = await one_request(user, n)
            except Exception as exc:  # a benchmark counts failures instead of stopping at the first
                if len(result.errors) < max_errors_kept:
                    result.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                else:
                    result.errors.append("")
            else:
                result.latencies_s.append(time.perf_counter() - began)
                if extra is not None:
                    result.extras.append(extra)
            n += 1

    tasks = [asyncio.create_task(user_loop(u)) for u in range(users)]
    await asyncio.sleep(0)
    began = time.perf_counter()
    deadline.append(began + (duration_s or 0))
    start_gate.set()
    await asyncio.gather(*tasks)
    result.wall_s = time.perf_counter() - began
    return result


# --- OpenAI-compatible streams -------------------------------------------------------------------------------

@dataclass
class StreamTiming:
    """One streamed completion as a client saw it. Times are from sending the request."""

    status: int = 0
    first_byte_s: float = math.nan  # the first body byte (may be an empty role chunk)
    first_content_s: float = math.nan  # the first chunk carrying content text (what a user sees)
    total_s: float = math.nan
    text: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    done: bool = False
    error: dict[str, Any] | None = None


async def timed_stream(client: httpx.AsyncClient, url: str, body: Mapping[str, Any],
                       headers: Mapping[str, str] | None = None) -> StreamTiming:
    """POST a streaming chat completion; time the first byte, the first content and the end of the stream."""
    timing = StreamTiming()
    began = time.perf_counter()
    raw = b""
    async with client.stream("POST", url, json=dict(body), headers=dict(headers or {})) as response:
        timing.status = response.status_code
        pending = ""
        async for chunk in response.aiter_raw():
            if not chunk:
                continue
            if math.isnan(timing.first_byte_s):
                timing.first_byte_s = time.perf_counter() - began
            if response.status_code != 200:
                raw += chunk
                continue
            pending += chunk.decode()
            *complete, pending = pending.split("\n")
            for line in complete:
                parse_sse_line(line, timing)
                if timing.text and math.isnan(timing.first_content_s):
                    timing.first_content_s = time.perf_counter() - began
        parse_sse_line(pending, timing)
    timing.total_s = time.perf_counter() - began
    if timing.status != 200:
        try:
            timing.error = json.loads(raw).get("error")
        except (ValueError, AttributeError):
            timing.error = {"message": raw[:200].decode(errors="replace")}
    return timing


def parse_sse_line(line: str, into: StreamTiming) -> None:
    """Fold one `data:` line into `into`: content text, agent events, finish reason, `[DONE]`, error chunks."""
    if not line.startswith("data:"):
        return
    data = line[5:].strip()
    if data == "[DONE]":
        into.done = True
        return
    chunk = json.loads(data)
    if chunk.get("error"):  # a mid-stream error: the OpenAI error object, on its own or on the last chunk
        into.error = chunk["error"]
    if chunk.get("agent_event"):
        into.events.append(chunk["agent_event"])
    for choice in chunk.get("choices") or []:
        into.text += (choice.get("delta") or {}).get("content") or ""
        into.finish_reason = choice.get("finish_reason") or into.finish_reason


def chat_body(text: str, *, stream: bool = True, model: str = "agent") -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}


def local_client(*, connections: int = 400, timeout_s: float = 120) -> httpx.AsyncClient:
    """An httpx client for loopback servers: no proxies from the environment, enough connections for the load,
    and trust in the emulators' CA (`SSL_CERT_FILE`, set by bench._cloud.local_cloud) for the HTTPS ones."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    ca_file = os.environ.get("SSL_CERT_FILE")
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    return httpx.AsyncClient(trust_env=False, limits=limits, timeout=timeout_s, verify=verify)


# --- process figures ----------------------------------------------------------------------------------------

def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MiB."""
    return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20


def open_fds(pid: int | None = None) -> int:
    return psutil.Process(pid or os.getpid()).num_fds()


# --- printing -----------------------------------------------------------------------------------------------

class Report:
    """Collects a benchmark's figures and prints each with what it measured; `as_dict()` feeds run_all."""

    def __init__(self, title: str, method: str) -> None:
        self.title = title
        self.figures: dict[str, Any] = {}
        print(f"\n== {title} ==", flush=True)
        print(f"   how: {method}", flush=True)

    def figure(self, name: str, value: Any, what: str = "") -> None:
        self.figures[name] = value
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"   {name}: {shown}" + (f"   ({what})" if what else ""), flush=True)

    def note(self, text: str) -> None:
        print(f"   note: {text}", flush=True)

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "figures": self.figures}


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else math.inf


def read_worker_arguments(description: str) -> tuple[dict[str, Any], list[str], int, list[str]]:
    """The command line shared by the benchmark-2 worker processes: the emulators' ready-file, a JSON list of
    user JWTs (one per simulated user), the requests per user, and optionally other users' JWTs whose same
    workload runs first, unmeasured (`--warmup-tokens`), so the measured run meets a warm process."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--info", required=True, help="the emulators' ready-file (JSON)")
    parser.add_argument("--tokens", required=True, help="a JSON file with one user JWT per simulated user")
    parser.add_argument("--requests-per-user", type=int, default=1)
    parser.add_argument("--warmup-tokens", help="a JSON file with the JWTs of the unmeasured warm-up users")
    args = parser.parse_args()
    with open(args.info) as f:
        info = json.load(f)
    with open(args.tokens) as f:
        tokens = json.load(f)
    warmup: list[str] = []
    if args.warmup_tokens:
        with open(args.warmup_tokens) as f:
            warmup = json.load(f)
    return info, tokens, args.requests_per_user, warmup
