"""Starts the emulated cloud, the real agent app wired to it with the chat page, and the callback process.

The agent app is built by `wiring.agent_app.create_app(env)` exactly as in production; only local extras are added here:
the static chat page at `/chat/`, its configuration at `/sandbox/config`, and a read-only view of the emulated
DingTalk documents (same origin, so the page needs no CORS). The OAuth2 callback runs as production runs it
on AgentRun: `python app.py callback`, a process of its own that signs the browser in at the (emulated) IdP.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from emulators import LocalCloud, start_local_cloud
from sandbox.process import app_process
from server.serving import serve

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DEMO_USER = "alice"
DEMO_DOCUMENT = "doc123"
EXAMPLE_PROMPT = f"帮我写入“Helloworld”到钉钉文档，文档ID：{DEMO_DOCUMENT}"


@dataclass
class Sandbox:
    """A running sandbox: the agent's base URL, the emulators, and a fresh JWT for the demo user."""

    base_url: str
    callback_url: str  # APP_REDIRECT_URI: the callback process serves `{callback_url}/callback`
    cloud: LocalCloud
    demo_user: str
    demo_jwt: str
    _loop: asyncio.AbstractEventLoop
    _stop: asyncio.Event  # set on `_loop`: the server stops as on SIGTERM
    _thread: threading.Thread
    _callback: ExitStack

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/"

    def stop(self) -> None:
        """Stop the agent server (finishing open streams briefly), then every emulator."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)
        self._callback.close()
        self.cloud.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def example_curl(base_url: str, jwt: str, session_id: str = "demo-session-1") -> str:
    """The product's documented call: streamed, with `?sessionId=`, the user's Bearer JWT, the DingTalk prompt."""
    body = json.dumps({"model": "qwen-plus", "stream": True,
                       "messages": [{"role": "user", "content": EXAMPLE_PROMPT}]}, ensure_ascii=False)
    url = f"{base_url}/openai/v1/chat/completions?sessionId={session_id}"
    return (f"curl -N {shlex.quote(url)} \\\n  -H 'Content-Type: application/json' \\\n"
            f"  -H \"Authorization: Bearer {jwt}\" \\\n  -d {shlex.quote(body)}")


def start_sandbox(port: int = 9000, demo_user: str = DEMO_USER, *, callback_port: int = 8090,
                  log_level: str = "warning") -> Sandbox:
    """Start emulators, the agent server on 127.0.0.1:`port` and the callback on `callback_port` (0: free
    ports); returns once all answer."""
    sock = _bind(port)
    base_url = f"http://localhost:{sock.getsockname()[1]}"
    callback_sock = _bind(callback_port)
    callback_port = callback_sock.getsockname()[1]
    callback_sock.close()  # the callback process binds it itself
    callback_url = f"http://localhost:{callback_port}"
    cloud = start_local_cloud(return_urls=[f"{callback_url}/callback"])
    # The agent runs in this process: it trusts the emulators' CA as an operator trusts a corporate CA.
    os.environ["SSL_CERT_FILE"] = cloud.ca_file
    callback = ExitStack()
    try:
        env = {**cloud.env, "APP_REDIRECT_URI": callback_url, "LOG_LEVEL": "INFO"}
        callback.enter_context(app_process(env, "callback", port=callback_port, echo=log_level == "info"))
        app = _build_app(cloud, env, demo_user)
        # Served as `python app.py` serves it (server/serving.py, Hypercorn and its limits); the socket already
        # listens, so the URL works at once. The caller owns Ctrl-C: `stop` ends the server.
        loop, stop = asyncio.new_event_loop(), asyncio.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve(app, app.state.settings.server.server_limits, app.state.shutdown,
                                              sock=sock, stop=stop))
            finally:
                loop.close()
                sock.close()

        thread = threading.Thread(target=run, name="agent-server", daemon=True)
        thread.start()
        return Sandbox(base_url, callback_url, cloud, demo_user, cloud.issue_user_jwt(demo_user), loop, stop,
                       thread, callback)
    except BaseException:
        callback.close()
        cloud.stop()
        sock.close()
        raise


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        sock.close()
        raise SystemExit(f"port {port} is busy ({error.strerror}); choose another with --port") from None
    sock.listen(512)
    return sock


def _build_app(cloud: LocalCloud, env: dict[str, str], demo_user: str) -> FastAPI:
    """The production app over the emulators' env, plus the chat page and its two local helpers."""
    from wiring.agent_app import create_app

    app = create_app({**env, "HOST": "127.0.0.1"})
    dingtalk = cloud.url("dingtalk")
    emulator_tls = cloud.ssl_context()
    page_config: dict[str, Any] = {"idp_token_url": f"{cloud.browser_url('idp')}/token",
                                   "demo_user": demo_user,
                                   "example_prompt": EXAMPLE_PROMPT, "demo_document": DEMO_DOCUMENT,
                                   "model": cloud.info["model_name"]}

    @app.get("/sandbox/config", include_in_schema=False)
    async def sandbox_config() -> dict[str, Any]:
        return page_config

    @app.get("/sandbox/documents/{doc_key}", include_in_schema=False)
    async def document(doc_key: str) -> JSONResponse:
        """The emulated DingTalk document as the API stored it (emulator state, no credential involved)."""
        async with httpx.AsyncClient(trust_env=False, verify=emulator_tls, timeout=5) as client:
            response = await client.get(f"{dingtalk}/emulator/documents/{doc_key}")
        return JSONResponse(response.json(), status_code=response.status_code)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/chat/")

    app.mount("/chat", StaticFiles(directory=WEB_DIR, html=True), name="chat")
    return app
