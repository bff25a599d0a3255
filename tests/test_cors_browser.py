"""CORS as a browser meets it: the official `openai` npm package (pinned in tests/js_clients) running in headless
Chromium on a page of an allowed origin calls the agent, after the preflight its `X-Stainless-*` headers cause;
and the preflight with that header set, over HTTP, from the allowed origin and from another one."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.app_server import serve_app
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.http_server import serving_in_a_thread

NODE_MODULES = Path(__file__).resolve().parent / "js_clients" / "node_modules"
# What Chromium sends as Access-Control-Request-Headers for the npm client's chat.completions.create.
OPENAI_NPM_HEADERS = ("authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,"
                      "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
                      "x-stainless-runtime-version,x-stainless-timeout")


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """A static server for the page's origin: the npm package's ES modules, served as browsers need them."""
    if not (NODE_MODULES / "openai").is_dir():
        pytest.skip("tests/js_clients/node_modules is missing (scripts/test runs npm ci)")

    class Handler(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                          ".js": "text/javascript", ".html": "text/html"}

        def log_message(self, *_: object) -> None:
            pass

    with serving_in_a_thread(functools.partial(Handler, directory=NODE_MODULES)) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def server(cloud, page_origin) -> Iterator[str]:
    with serve_app(cloud.env | {"CORS_ALLOW_ORIGINS": page_origin, "MODEL_MAX_RETRIES": "0"}) as base_url:
        yield base_url


def test_the_preflight_allows_the_openai_sdk_headers_at_an_allowed_origin_only(server, page_origin) -> None:
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": OPENAI_NPM_HEADERS}
    allowed = httpx.options(f"{server}/openai/v1/chat/completions", headers={"Origin": page_origin, **ask})
    other = httpx.options(f"{server}/openai/v1/chat/completions", headers={"Origin": "https://evil.example", **ask})
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == page_origin
    granted = {name.strip().lower() for name in allowed.headers["access-control-allow-headers"].split(",")}
    assert set(OPENAI_NPM_HEADERS.split(",")) | {"idempotency-key", "openai-organization", "openai-project"} <= granted
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not found at {CHROMIUM}")
async def test_the_openai_npm_client_calls_the_agent_from_chromium(cloud, server, page_origin) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    jwt = cloud.issue_user_jwt("cors-browser")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await chromium.new_page()
            await page.goto(f"{page_origin}/openai/package.json")  # any page of the allowed origin
            result = await page.evaluate("""async ([baseURL, apiKey]) => {
                const { default: OpenAI } = await import("/openai/index.mjs");
                const client = new OpenAI({ baseURL, apiKey, dangerouslyAllowBrowser: true, maxRetries: 0,
                                            organization: "org-1", project: "proj-1" });
                const answer = await client.chat.completions.create({ model: "qwen-plus",
                    messages: [{ role: "user", content: "hello there" }] });
                let streamed = "";
                const stream = await client.chat.completions.create({ model: "qwen-plus", stream: true,
                    messages: [{ role: "user", content: "hello there" }] });
                for await (const chunk of stream) streamed += chunk.choices?.[0]?.delta?.content ?? "";
                return { answer: answer.choices[0].message.content, streamed };
            }""", [f"{server}/openai/v1", jwt])
        finally:
            await chromium.close()
    assert 'I understood your message: "hello there"' in result["answer"]
    assert 'I understood your message: "hello there"' in result["streamed"]
