"""Fault injection through the emulators' public routes, and one streamed chat as a user sees it (links
approved while the stream waits), for the reliability tests."""

from __future__ import annotations

import asyncio

import httpx

from bench._harness import StreamTiming, chat_body, parse_sse_line

REDIRECT_BASE = "http://localhost:8090"  # APP_REDIRECT_URI of the emulators' env: the registered return URL


def set_faults(cloud, name: str, **faults) -> None:
    httpx.post(f"{cloud.url(name)}/emulator/faults", json=faults).raise_for_status()


async def approve(client: httpx.AsyncClient, base_url: str, url: str, jwt: str) -> None:
    """Be the user: approve on the consent page, then land on our callback as the same signed-in user."""
    (await client.get(url)).raise_for_status()  # the person opens the link, then approves
    answer = await client.post(url, data={"decision": "approve"}, follow_redirects=False)
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_BASE), location
    landed = await client.get(base_url + location[len(REDIRECT_BASE):], headers={"Authorization": f"Bearer {jwt}"})
    assert landed.status_code == 200, landed.text


async def chat(client: httpx.AsyncClient, base_url: str, jwt: str, prompt: str, *,
               approve_links: bool = True) -> StreamTiming:
    """One streamed request; authorization links that show up are approved while the stream waits."""
    timing = StreamTiming()
    approvals = []
    async with client.stream("POST", f"{base_url}/openai/v1/chat/completions", json=chat_body(prompt),
                             headers={"Authorization": f"Bearer {jwt}"}) as response:
        timing.status = response.status_code
        if response.status_code != 200:
            timing.error = (await response.aread()) and response.json().get("error")
            return timing
        async for line in response.aiter_lines():
            seen = len(timing.events)
            parse_sse_line(line, timing)
            for event in timing.events[seen:]:
                if event.get("type") == "authorization_required" and approve_links:
                    approvals.append(asyncio.create_task(approve(client, base_url, event["url"], jwt)))
    await asyncio.gather(*approvals)
    return timing


async def server_request_tasks(state: dict) -> list[str]:
    """Tasks still alive on the server's loop besides the HTTP server's own serving machinery (Hypercorn's
    connections, its lifespan, server/serving.py waiting for the stop)."""
    loop = state["loop"]

    def serving_machinery(task: asyncio.Task) -> bool:
        code = getattr(task.get_coro(), "cr_code", None)
        where, name = (code.co_filename, code.co_name) if code else ("", "")
        running_the_app = where.endswith("task_group.py") and name == "_handle"  # a request still in the app
        return ("/hypercorn/" in where and not running_the_app) or where.endswith("server/serving.py")

    async def names() -> list[str]:
        current = asyncio.current_task()
        return [repr(t.get_coro()) for t in asyncio.all_tasks() if t is not current and not serving_machinery(t)]

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(names(), loop))
