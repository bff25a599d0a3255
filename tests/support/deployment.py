"""The product deployed as production runs it, for the consent journey tests: the emulated cloud, the agent
(`python app.py`) and the callback (`python app.py callback`) as two processes, the README's streamed call,
and (from sandbox/browser.py) a browser stand-in that only follows links and submits forms.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from emulators import LocalCloud, start_local_cloud
from sandbox.browser import LinkFollowingBrowser, page_title
from sandbox.chat_stream import chat_chunks
from sandbox.process import app_process, free_port

__all__ = ["DINGTALK_PROMPT", "Deployment", "LinkFollowingBrowser", "deployment", "page_title", "stream_chat",
           "switch_href"]

DINGTALK_PROMPT = "帮我写入“{text}”到钉钉文档，文档ID：{doc}"


@dataclass
class Deployment:
    cloud: LocalCloud
    agent_urls: list[str]
    public_url: str  # APP_REDIRECT_URI: the callback's public base URL (`{public_url}/callback`)
    callback_direct_url: str  # where the callback process listens (a proxy may stand in front)
    env: dict[str, str]

    @property
    def agent_url(self) -> str:
        return self.agent_urls[0]


@contextmanager
def deployment(*, agents: int = 1, callback_public_url: str | None = None,
               extra_env: dict[str, str] | None = None, cloud: LocalCloud | None = None) -> Iterator[Deployment]:
    """Start the cloud (unless given), `agents` agent processes and one callback process. With
    `callback_public_url` the callback is registered under that public URL (a proxy in front serves it)."""
    with ExitStack() as stack:
        cloud = cloud or stack.enter_context(start_local_cloud())
        callback_port = free_port()
        public = callback_public_url or f"http://127.0.0.1:{callback_port}"
        cloud.register_return_url(f"{public}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": public, "AUTHORIZATION_TIMEOUT_SECONDS": "60",
               "STREAM_KEEPALIVE_SECONDS": "0.5", **(extra_env or {})}
        callback_url = stack.enter_context(app_process(env, "callback", port=callback_port))
        agent_urls = [stack.enter_context(app_process(env, port=free_port())) for _ in range(agents)]
        yield Deployment(cloud, agent_urls, public, callback_url, env)


async def stream_chat(agent_url: str, jwt: str, prompt: str,
                      on_link: Callable[[str], Awaitable[None]] | None = None) -> dict[str, Any]:
    """The README's curl call: stream one turn; `on_link(url)` runs while the stream stays open."""
    text, events = [], []
    async with httpx.AsyncClient(trust_env=False, timeout=90) as client:
        async with client.stream("POST", f"{agent_url}/openai/v1/chat/completions?sessionId=journey",
                                 headers={"Authorization": f"Bearer {jwt}"},
                                 json={"model": "qwen-plus", "stream": True,
                                       "messages": [{"role": "user", "content": prompt}]}) as response:
            assert response.status_code == 200, await response.aread()
            async for chunk in chat_chunks(response):
                for choice in chunk.get("choices") or []:
                    text.append(choice["delta"].get("content") or "")
                event = chunk.get("agent_event")
                if event:
                    events.append(event)
                if event and event["type"] == "authorization_required" and on_link is not None:
                    await on_link(event["url"])
    return {"text": "".join(text), "events": events, "types": [e["type"] for e in events]}


def switch_href(page: httpx.Response) -> str:
    """The "Sign in as a different user" link of a "Wrong user" page."""
    match = re.search(r'<a class="button" href="([^"]+)">Sign in as a different user</a>', page.text)
    assert match, page.text
    return match.group(1)
