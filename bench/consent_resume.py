"""Benchmark 6: from the user's approval to the waiting streams going on, across the deployments we support.

A link-following browser opens the link, "thinks" a random 1-7 s (so the approval falls anywhere in the
agent's poll schedule, as a person's does), approves and signs in; a figure is the time from the callback's
"Authorization complete" page reaching the browser to the `authorization_completed` event reaching a stream.
Scenarios:
- `two instances` (production: the callback is its own process, so the agents learn of the approval only by
  polling Agent Identity): a new user streams on agent A, then on agent B (two links), and approves A's link.
  Figures: A resumed after the approval (`approved`), B resumed after it (`other`), and Agent Identity calls
  per second per waiting user per instance while both waited (all actions, the emulator's own counter,
  divided by the window and the two instances);
- `steady polling`: one user waits on both agents for a fixed window, nobody approves: the calls/s per
  instance once the waits are old (the whole of a long wait);
- `mounted callback`: the agent's own /callback completes the flow and wakes the waiting request at once.

Agent Identity and STS answer after 50 ms. `BENCH_APP_ROOT=<another checkout>` runs that checkout's app.py
(side-by-side comparisons).

    python -m bench.consent_resume [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench._harness import Report, percentile
from emulators import LocalCloud, start_local_cloud
from sandbox.browser import LinkFollowingBrowser, page_title
from sandbox.process import ROOT, app_process, free_port

PROMPT = "帮我写入“resume {n}”到钉钉文档，文档ID：docResume{n}"
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT") or ROOT)
LATENCY = {"agent_identity": {"latency_ms": 50}, "sts": {"latency_ms": 50}}
THINK_S = (1.0, 7.0)  # a person's time on the consent page, uniform: any phase of the poll schedule
STEADY_WINDOW_S = 30.0  # shorter for a few rounds (run_all --quick): 4 s a round


class Stream:
    """One streamed turn in the background: `link` once the authorization link arrived, `resumed` the
    monotonic time of its `authorization_completed` event."""

    def __init__(self, agent_url: str, jwt: str, prompt: str) -> None:
        self.link: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.resumed = 0.0
        self.task = asyncio.create_task(self._run(agent_url, jwt, prompt))

    async def _run(self, agent_url: str, jwt: str, prompt: str) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=180) as client:
            async with client.stream("POST", f"{agent_url}/openai/v1/chat/completions",
                                     headers={"Authorization": f"Bearer {jwt}"},
                                     json={"stream": True,
                                           "messages": [{"role": "user", "content": prompt}]}) as answer:
                async for line in answer.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    event = json.loads(line[6:]).get("agent_event") or {}
                    if event.get("type") == "authorization_required":
                        self.link.set_result(event["url"])
                    elif event.get("type") == "authorization_completed":
                        self.resumed = time.monotonic()
        if not self.resumed:
            raise RuntimeError("the stream ended without authorization_completed")

    async def shown(self) -> str:
        done, _ = await asyncio.wait((self.link, self.task), return_when=asyncio.FIRST_COMPLETED)
        if self.link not in done:
            self.task.result()
            raise RuntimeError("the stream ended without a link")
        return self.link.result()


async def approve(link: str, user: str, think_s: float = 0.0) -> float:
    """Open the link, think, approve and sign in; the monotonic time the success page arrived."""
    browser = LinkFollowingBrowser()
    consent = await browser.open(link)
    await asyncio.sleep(think_s)
    signin = await browser.submit(consent, "approve")
    page = signin if "Sign in" not in signin.text else await browser.submit(signin, "sign-in", username=user)
    approved = time.monotonic()
    await browser.aclose()
    if page_title(page) != "Authorization complete":
        raise RuntimeError(f"the callback answered {page.status_code} {page_title(page)!r}")
    return approved


def identity_calls(cloud: LocalCloud) -> int:
    """The agents' Agent Identity API calls so far (the emulator's public counter): every action but the
    callback's CompleteResourceTokenAuth, and not the browser's visits to the consent page."""
    answer = httpx.get(f"{cloud.url('agent_identity')}/emulator/calls", verify=cloud.ssl_context(),
                       trust_env=False, timeout=10).json()
    return sum(count for key, count in answer.items()
               if "/" not in key and " " not in key and key != "CompleteResourceTokenAuth")


async def mounted_round(cloud: LocalCloud, agent_url: str, n: int) -> float:
    user = f"mounted-{n}-{time.monotonic_ns()}"
    stream = Stream(agent_url, cloud.issue_user_jwt(user), PROMPT.format(n=f"m{n}"))
    approved = await approve(await stream.shown(), user)
    await stream.task
    return stream.resumed - approved


async def two_instance_round(cloud: LocalCloud, agents: list[str], n: int) -> tuple[float, float, float]:
    """(approved resumed, other resumed, calls/s per waiting user per instance while both waited)."""
    user = f"two-instances-{n}-{time.monotonic_ns()}"
    jwt = cloud.issue_user_jwt(user)
    on_a = Stream(agents[0], jwt, PROMPT.format(n=f"{n}a"))
    link = await on_a.shown()
    on_b = Stream(agents[1], jwt, PROMPT.format(n=f"{n}b"))
    await on_b.shown()
    calls_before, began = identity_calls(cloud), time.monotonic()
    approved = await approve(link, user, random.uniform(*THINK_S))
    rate = (identity_calls(cloud) - calls_before) / (approved - began) / len(agents)
    await asyncio.gather(on_a.task, on_b.task)
    return on_a.resumed - approved, on_b.resumed - approved, rate


async def steady_rate(cloud: LocalCloud, agents: list[str], window_s: float) -> float:
    """Agent Identity calls/s per instance while one user waits on every agent and nobody approves."""
    user = f"steady-{time.monotonic_ns()}"
    jwt = cloud.issue_user_jwt(user)
    streams = []
    for n, agent in enumerate(agents):
        streams.append(Stream(agent, jwt, PROMPT.format(n=f"steady{n}")))
        await streams[-1].shown()
    await asyncio.sleep(15)  # past any start-up of the schedule
    before, began = identity_calls(cloud), time.monotonic()
    await asyncio.sleep(window_s)
    rate = (identity_calls(cloud) - before) / (time.monotonic() - began) / len(agents)
    for stream in streams:
        stream.task.cancel()
    await asyncio.gather(*(stream.task for stream in streams), return_exceptions=True)
    return rate


def measure(rounds: int) -> dict[str, Any]:
    report = Report("Benchmark 6: approval to resumed streams",
                    f"python app.py (x2, from {APP_ROOT}) and python app.py callback as processes over the "
                    "emulators (Agent Identity and STS 50 ms); a browser thinks 1-7 s on the consent page, "
                    "approves and signs in; seconds from the callback's success page to each stream's "
                    "authorization_completed event, a new user each round")
    window_s = min(STEADY_WINDOW_S, 4.0 * rounds)
    with ExitStack() as stack:
        cloud = stack.enter_context(start_local_cloud(faults=LATENCY))
        callback_port, mounted_port = free_port(), free_port()
        callback_url, mounted_url = f"http://127.0.0.1:{callback_port}", f"http://127.0.0.1:{mounted_port}"
        for url in (callback_url, mounted_url):
            cloud.register_return_url(f"{url}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": callback_url, "AUTHORIZATION_TIMEOUT_SECONDS": "180"}
        stack.enter_context(app_process(env, "callback", port=callback_port, code_dir=APP_ROOT))
        agents = [stack.enter_context(app_process(env, port=free_port(), code_dir=APP_ROOT))
                  for _ in range(2)]
        mounted = stack.enter_context(app_process({**env, "APP_REDIRECT_URI": mounted_url}, port=mounted_port,
                                                  code_dir=APP_ROOT))

        async def run() -> tuple[list[tuple[float, float, float]], float, list[float]]:
            both = [await two_instance_round(cloud, agents, n) for n in range(rounds)]
            steady = await steady_rate(cloud, agents, window_s)
            at_once = [await mounted_round(cloud, mounted, n) for n in range(min(rounds, 8))]
            return both, steady, at_once

        both, steady, at_once = asyncio.run(run())
    for index, name in ((0, "approved request resumed"), (1, "other request resumed")):
        values = [round_[index] for round_ in both]
        report.figure(f"two instances, {name}: p95 s", percentile(values, 95),
                      f"p50 {statistics.median(values):.2f}, max {max(values):.2f} s over {rounds} rounds")
    rates = [round_[2] for round_ in both]
    report.figure("two instances, Agent Identity calls/s per waiting user per instance: p95",
                  percentile(rates, 95), f"mean {statistics.mean(rates):.3f} over each round's wait (1-7 s, "
                                         "from both links shown to the approval)")
    report.figure("steady polling, calls/s per waiting user per instance", steady,
                  f"one user waiting on both agents, {window_s:.0f} s window after 15 s")
    report.figure("mounted callback: p50 s", statistics.median(at_once),
                  f"max {max(at_once):.3f} s over {len(at_once)} rounds")
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    measure(parser.parse_args().rounds)


if __name__ == "__main__":
    main()
