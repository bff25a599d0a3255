"""server/starting.py: the port opens before the app is built. `/health` answers at once, other requests wait
for the app and are then served by it, the app's lifespan runs inside the server's, and a failed build or a
stop before the app is ready ends every waiting request with a clear 503. Over real HTTP (Hypercorn, as
`python app.py` serves), with a build held by the test."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from emulators._server import listening_socket
from sandbox.process import app_process, free_port
from server.serving import serve
from settings.server import ServerLimits
from server.shutdown import Shutdown
from server.starting import StartingApp

LIMITS = ServerLimits(max_header_bytes=16 * 1024, header_timeout_seconds=5, shutdown_grace_seconds=2)


@dataclass
class HeldBuild:
    """A build that waits until the test lets it finish (or fail), and an app that records its lifespan."""

    release: threading.Event = field(default_factory=threading.Event)
    fail: bool = False
    lifespan: list[str] = field(default_factory=list)

    def __call__(self) -> ASGIApp:
        assert self.release.wait(10), "the test never released the build"
        if self.fail:
            raise ModuleNotFoundError("a module the app needs is missing", name="langchain_openai")

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self.lifespan.append("startup")
            yield
            self.lifespan.append("shutdown")

        async def chat(request: Request) -> JSONResponse:
            return JSONResponse({"served_by": "the built app", "body": (await request.body()).decode()})

        return Starlette(routes=[Route("/chat", chat, methods=["POST"])], lifespan=lifespan)


@asynccontextmanager
async def serving(build: Callable[[], ASGIApp], max_waiting: int = 50) -> AsyncIterator[
        tuple[httpx.AsyncClient, StartingApp, asyncio.Event, asyncio.Task[None]]]:
    """Serve a StartingApp on a free loopback port; yields a client, the app, its stop event, the server."""
    stop, shutdown = asyncio.Event(), Shutdown()
    app = StartingApp(build, shutdown, on_failure=stop.set, max_waiting=max_waiting)
    sock = listening_socket()
    server = asyncio.create_task(serve(app, LIMITS, shutdown, sock=sock, stop=stop))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as client:
            yield client, app, stop, server
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
        sock.close()


async def test_health_answers_while_the_app_is_built_and_requests_wait_for_it() -> None:
    build = HeldBuild()
    async with serving(build) as (client, app, _, _):
        for method in ("GET", "HEAD"):
            health = await client.request(method, "/health")
            assert health.status_code == 200
        assert (await client.get("/health")).json() == {"status": "ok"}
        refused = await client.post("/health")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
        assert refused.json() == {"error": {"message": "Method Not Allowed", "type": "invalid_request_error",
                                            "code": "method_not_allowed", "param": None}}

        waiting = asyncio.create_task(client.post("/chat", content=b"hello"))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # held until the app exists
        assert build.lifespan == []

        build.release.set()
        answer = await waiting
        assert answer.status_code == 200
        assert answer.json() == {"served_by": "the built app", "body": "hello"}
        assert build.lifespan == ["startup"]  # the app's own lifespan ran before it served
        assert app.app is not None and not app.failed
    assert build.lifespan == ["startup", "shutdown"]  # and its shutdown when the server stopped


async def test_beyond_max_waiting_a_request_is_refused_at_once_as_the_app_s_own_limit_does() -> None:
    build = HeldBuild()
    async with serving(build, max_waiting=2) as (client, app, _, _):
        waiting = [asyncio.create_task(client.post("/chat", content=str(n).encode())) for n in range(2)]
        while app.waiting < 2:
            await asyncio.sleep(0.01)
        refused = await client.post("/chat", content=b"third")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "server_busy"
        assert refused.headers["retry-after"] == "1"
        assert (await client.get("/health")).status_code == 200  # never refused
        build.release.set()
        assert [answer.status_code for answer in await asyncio.gather(*waiting)] == [200, 200]
        assert app.waiting == 0


async def test_a_failed_build_answers_every_waiting_request_with_a_503_and_stops_the_server(
        caplog: pytest.LogCaptureFixture) -> None:
    build = HeldBuild(fail=True)
    async with serving(build) as (client, app, stop, server):
        waiting = [asyncio.create_task(client.post("/chat", content=b"x")) for _ in range(3)]
        await asyncio.sleep(0.2)
        build.release.set()
        for answer in await asyncio.gather(*waiting):
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "service_unavailable"
            assert answer.headers["retry-after"] == "5"
        await asyncio.wait_for(server, 10)  # on_failure stopped it
        assert stop.is_set() and app.failed
    assert "the app could not be built, so the process stops: ModuleNotFoundError at " in caplog.text
    assert "(module 'langchain_openai')" in caplog.text
    assert "a module the app needs is missing" not in caplog.text  # messages may quote settings


async def test_a_stop_before_the_app_is_ready_answers_waiting_requests_service_restarting() -> None:
    build = HeldBuild()
    async with serving(build) as (client, _, stop, server):
        waiting = asyncio.create_task(client.post("/chat", content=b"x"))
        await asyncio.sleep(0.2)
        stop.set()  # as SIGTERM does
        answer = await waiting
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "service_restarting"
        build.release.set()  # the build thread ends; the server then finishes its lifespan
        await asyncio.wait_for(server, 10)
    assert build.lifespan == ["startup", "shutdown"]


def test_python_app_py_builds_the_app_after_opening_its_port(cloud, tmp_path) -> None:
    log = tmp_path / "app.log"
    env = {**cloud.env, "LOG_FORMAT": "json"}
    with app_process(env, port=free_port(), log_path=log) as base_url:
        headers = {"Authorization": f"Bearer {cloud.issue_user_jwt('alice')}"}
        body = {"messages": [{"role": "user", "content": "hello"}]}
        answer = httpx.post(f"{base_url}/openai/v1/chat/completions", json=body, headers=headers,
                            timeout=30, trust_env=False)
        assert answer.status_code == 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    ready = [line["message"] for line in lines if line.get("message", "").startswith("ready:")]
    assert len(ready) == 1 and "the app was built in" in ready[0]


def test_sigterm_while_the_app_is_being_built_exits_0_and_a_waiting_request_is_told_to_retry(cloud, tmp_path):
    started: list = []
    with app_process(cloud.env, port=free_port(), log_path=tmp_path / "app.log", started=started) as base_url:
        process = started[0]
        with httpx.Client(base_url=base_url, trust_env=False, timeout=30) as client:
            waiting = threading.Thread(target=lambda: answers.append(client.get("/openai/v1/models")))
            answers: list[httpx.Response] = []
            waiting.start()
            time.sleep(0.1)  # connected and waiting (the build takes about a second)
            process.send_signal(signal.SIGTERM)
            waiting.join(30)
        assert process.wait(30) == 0
    assert len(answers) == 1, answers
    # Built in time or not, the request got an answer: the app's own, or 503 service_restarting.
    assert answers[0].status_code in (401, 503)
    if answers[0].status_code == 503:
        assert answers[0].json()["error"]["code"] == "service_restarting"
