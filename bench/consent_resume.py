"""Benchmark 6: from the user's approval to the waiting stream going on, across the deployments we support.

For each round a new user streams the DingTalk prompt; when the link arrives, a link-following browser
approves and signs in at the IdP; the figure is the time from the callback's "Authorization complete" page
reaching the browser to the `authorization_completed` event reaching the stream. Scenarios:
- `callback process`: the callback runs as its own process (production on AgentRun): the agent learns of
  the approval by polling Agent Identity (0.5 s, doubling to 3 s);
- `mounted callback`: the agent's own /callback completes the flow and wakes the waiting poll at once;
- `other link`: the same user asked on two agents and approved the second agent's link: the first agent's
  stream ends through its vault probe (every third poll).

    python -m bench.consent_resume [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

import httpx

from bench._harness import Report
from emulators import LocalCloud, start_local_cloud
from sandbox.browser import LinkFollowingBrowser, page_title
from sandbox.process import app_process, free_port

PROMPT = "帮我写入“resume {n}”到钉钉文档，文档ID：docResume{n}"


async def stream_until_resumed(agent_url: str, jwt: str, prompt: str,
                               on_link: Callable[[str], Awaitable[None]]) -> float:
    """Stream one turn; returns the monotonic time the `authorization_completed` event arrived."""
    resumed = None
    async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
        async with client.stream("POST", f"{agent_url}/openai/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {jwt}"},
                                 json={"stream": True, "messages": [{"role": "user", "content": prompt}]}) as answer:
            async for line in answer.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:]).get("agent_event") or {}
                if event.get("type") == "authorization_required":
                    asyncio.get_running_loop().create_task(on_link(event["url"]))
                elif event.get("type") == "authorization_completed":
                    resumed = time.monotonic()
    if resumed is None:
        raise RuntimeError("the stream ended without authorization_completed")
    return resumed


async def approve(link: str, user: str) -> float:
    browser = LinkFollowingBrowser()
    page = await browser.approve_and_sign_in(link, user)
    approved = time.monotonic()
    await browser.aclose()
    if page_title(page) != "Authorization complete":
        raise RuntimeError(f"the callback answered {page.status_code} {page_title(page)!r}")
    return approved


async def one_agent_round(cloud: LocalCloud, agent_url: str, n: int) -> float:
    user = f"resume-{n}-{time.monotonic_ns()}"
    approved: list[float] = []

    async def on_link(link: str) -> None:
        approved.append(await approve(link, user))

    resumed = await stream_until_resumed(agent_url, cloud.issue_user_jwt(user), PROMPT.format(n=n), on_link)
    return resumed - approved[0]


async def other_link_round(cloud: LocalCloud, agents: list[str], n: int) -> float:
    """Ask on the first agent, then on the second, approve only the second's link; the first's delay."""
    user = f"two-links-{n}-{time.monotonic_ns()}"
    jwt = cloud.issue_user_jwt(user)
    first_link = asyncio.Event()
    approved: list[float] = []

    async def hold(_: str) -> None:
        first_link.set()

    async def on_second(link: str) -> None:
        approved.append(await approve(link, user))

    first = asyncio.create_task(stream_until_resumed(agents[0], jwt, PROMPT.format(n=f"{n}a"), hold))
    await first_link.wait()
    await stream_until_resumed(agents[1], jwt, PROMPT.format(n=f"{n}b"), on_second)
    return await first - approved[0]


def measure(rounds: int) -> dict[str, Any]:
    report = Report("Benchmark 6: approval to resumed stream",
                    "python app.py (and python app.py callback) as processes over the emulators; a link-following "
                    "browser approves and signs in; seconds from the callback's success page to the stream's "
                    "authorization_completed event, per round (a new user each)")
    delays: dict[str, list[float]] = {}
    with ExitStack() as stack:
        cloud = stack.enter_context(start_local_cloud())
        callback_port, mounted_port, second_port = free_port(), free_port(), free_port()
        callback_url, mounted_url = f"http://127.0.0.1:{callback_port}", f"http://127.0.0.1:{mounted_port}"
        for url in (callback_url, mounted_url):
            cloud.register_return_url(f"{url}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": callback_url, "AUTHORIZATION_TIMEOUT_SECONDS": "120"}
        stack.enter_context(app_process(env, "callback", port=callback_port))
        agent = stack.enter_context(app_process(env, port=free_port()))
        second = stack.enter_context(app_process(env, port=second_port))
        mounted = stack.enter_context(app_process({**env, "APP_REDIRECT_URI": mounted_url}, port=mounted_port))

        async def run() -> None:
            for name, one_round in (("callback process", lambda n: one_agent_round(cloud, agent, n)),
                                    ("mounted callback", lambda n: one_agent_round(cloud, mounted, n)),
                                    ("other link", lambda n: other_link_round(cloud, [agent, second], n))):
                delays[name] = [await one_round(n) for n in range(rounds)]

        asyncio.run(run())
    for name, values in delays.items():
        report.figure(f"{name}: p50 s", statistics.median(values), f"max {max(values):.2f} s over {rounds} rounds")
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    measure(parser.parse_args().rounds)


if __name__ == "__main__":
    main()
