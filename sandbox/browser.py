"""A browser stand-in for the consent journey: it follows redirects, keeps cookies and submits the forms a
person would, and never adds a header of its own, so nothing passes that a person's browser would not send.
Used by the tests and the benchmarks (Chromium drives the same pages in the browser tests).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import httpx


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
