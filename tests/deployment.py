"""The product deployed as production runs it, for the consent journey tests: the emulated cloud, the agent
(`python app.py`) and the callback (`python app.py callback`) as two processes, and a browser stand-in that
only follows links and submits the forms a person would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import httpx

from emulators import LocalCloud, start_local_cloud
from sandbox.process import app_process, free_port

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
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    text.append(choice["delta"].get("content") or "")
                event = chunk.get("agent_event")
                if event:
                    events.append(event)
                if event and event["type"] == "authorization_required" and on_link is not None:
                    await on_link(event["url"])
    return {"text": "".join(text), "events": events, "types": [e["type"] for e in events]}


class _Forms(HTMLParser):
    """The forms of a page: action and the named inputs and buttons a person could submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "fields": {}, "buttons": []})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")
        elif tag == "button" and self.forms and values.get("name"):
            self.forms[-1]["buttons"].append((values["name"], values.get("value", "")))


class LinkFollowingBrowser:
    """An HTTP client with a cookie jar that follows redirects and submits forms, as a browser does: it never
    adds a header of its own, so nothing passes that a person's browser would not have."""

    def __init__(self) -> None:
        self.http = httpx.AsyncClient(trust_env=False, timeout=30, follow_redirects=True)

    async def open(self, url: str) -> httpx.Response:
        return await self.http.get(url)

    async def submit(self, page: httpx.Response, button_value: str, **fields: str) -> httpx.Response:
        """Fill `fields` and press the button whose value is `button_value` on `page`'s form."""
        parser = _Forms()
        parser.feed(page.text)
        for form in parser.forms:
            for name, value in form["buttons"]:
                if value == button_value:
                    data = {**form["fields"], **fields, name: value}
                    return await self.http.post(urljoin(str(page.url), form["action"]), data=data)
        raise AssertionError(f"no button {button_value!r} on {page.url}: {page.text[:500]}")

    async def submit_first_form(self, page: httpx.Response, **fields: str) -> httpx.Response:
        """Fill `fields` and submit the page's first form with its submit button (named or not)."""
        parser = _Forms()
        parser.feed(page.text)
        assert parser.forms, f"no form on {page.url}: {page.text[:500]}"
        form = parser.forms[0]
        return await self.http.post(urljoin(str(page.url), form["action"]), data={**form["fields"], **fields})

    async def approve_and_sign_in(self, link: str, user: str) -> httpx.Response:
        """Open the link, Approve, sign in at the IdP as `user`; the final page."""
        consent = await self.open(link)
        signin = await self.submit(consent, "approve")
        if "Sign in" not in signin.text:  # already signed in at the callback
            return signin
        return await self.submit(signin, "sign-in", username=user)

    async def aclose(self) -> None:
        await self.http.aclose()


def page_title(response: httpx.Response) -> str:
    match = re.search(r"<h1>(.*?)</h1>", response.text)
    return match.group(1) if match else ""
