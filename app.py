"""The OpenAI-compatible agent server: app factory, routes and entry point.

    python app.py            serve on HOST:FC_CUSTOM_LISTEN_PORT|PORT|9000
    python app.py callback   serve only the OAuth2 authorization callback (same host and port variables)

Routes only: validation, authentication and the request context happen here; running the agent and shaping
its output is agent/'s job. Heavy libraries (LangChain, the Alibaba SDKs) load lazily, so start-up is fast.
"""

from __future__ import annotations

import os
import sys

# AgentRun's zip layout puts dependencies in ./python, which is not on sys.path (FACTS §1). This must run
# before any third-party import.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(_HERE, "python"), _HERE):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.insert(0, _path)

import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402
from contextlib import asynccontextmanager, contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Self  # noqa: E402

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from config import ConfigError, EnvReader  # noqa: E402

log = logging.getLogger("app")
request_log = logging.getLogger("app.request")

CHAT_PATH = "/openai/v1/chat/completions"


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    max_request_bytes: int
    log_level: str
    keepalive_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        read = EnvReader(env)
        port = read.first("FC_CUSTOM_LISTEN_PORT", "PORT", default="9000")
        if not port.isdigit() or not 0 < int(port) < 65536:
            read.problems.append(f"FC_CUSTOM_LISTEN_PORT / PORT must be a TCP port, got {port!r}")
            port = "9000"
        settings = cls(
            host=read.str("HOST", "0.0.0.0"),
            port=int(port),
            max_request_bytes=read.int("MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024),
            log_level=read.str("LOG_LEVEL", "INFO").upper(),
            keepalive_seconds=read.float("STREAM_KEEPALIVE_SECONDS", 10.0, minimum=0.01),
        )
        read.check()
        return settings


@dataclass(frozen=True)
class Settings:
    """Every package's settings, built together so one error names every missing variable."""

    server: ServerSettings
    agent: Any
    identity: Any
    tools: Any

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        from agent.settings import AgentSettings
        from identity.settings import IdentitySettings
        from tools.settings import ToolSettings

        built: dict[str, Any] = {}
        problems: list[str] = []
        for name, kind in (("server", ServerSettings), ("agent", AgentSettings),
                           ("identity", IdentitySettings), ("tools", ToolSettings)):
            try:
                built[name] = kind.from_env(env)
            except ConfigError as error:
                problems += error.problems
        if problems:
            raise ConfigError(problems)
        return cls(**built)


def load_env() -> dict[str, str]:
    """The process environment over `.env` values (a real variable always wins)."""
    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(os.path.join(_HERE, ".env")).items() if v is not None}
    return {**values, **os.environ}


# --- per-request log line -------------------------------------------------------------------------------


@dataclass
class RequestLog:
    """Filled in while the request runs; written once as a JSON line when the response is over."""

    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    session_id: str | None = None
    sub: str | None = None
    model: str | None = None
    stream: bool | None = None
    tokens: dict[str, int] | None = None
    error: str | None = None

    def line(self) -> str:
        record = {"request_id": self.request_id, "method": self.method, "path": self.path,
                  "status": self.status, "duration_ms": round((time.perf_counter() - self.started) * 1000, 1),
                  "session_id": self.session_id, "sub": self.sub, "model": self.model, "stream": self.stream,
                  "tokens": self.tokens, "error": self.error}
        return json.dumps({k: v for k, v in record.items() if v is not None}, ensure_ascii=False)


class RequestLogMiddleware:
    """Assigns the request id and logs one line per request, after the last byte (streams included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = _safe_id(headers.get("x-request-id") or headers.get("x-fc-request-id")) or uuid.uuid4().hex
        entry = RequestLog(request_id, scope["method"], scope["path"])
        scope.setdefault("state", {})["request_log"] = entry

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except asyncio.CancelledError:
            entry.error = entry.error or "client_disconnected"
            raise
        except Exception as error:
            await self._answer_unexpected(error, entry, scope, receive, send_logged)
        finally:
            request_log.info(entry.line())

    @staticmethod
    async def _answer_unexpected(error: Exception, entry: RequestLog, scope: Scope, receive: Receive,
                                 send: Send) -> None:
        """The last line of defence: a 500 in the OpenAI shape if nothing was sent yet, and a log line naming
        the exception types only (messages can carry secrets). Not re-raised, so no server traceback either;
        a response already under way is left unfinished and the server closes the connection."""
        from agent.errors import ApiError, describe

        log.error("unhandled error on %s: %s", scope["path"], describe(error))
        entry.error = entry.error or "internal_error"
        if entry.status is None:
            await error_response(ApiError(500, "Internal server error.", "server_error", "internal_error"))(
                scope, receive, send)


def _safe_id(value: str | None) -> str | None:
    """Accept a caller-supplied request id only if it is short and plain (it goes into logs)."""
    if value and len(value) <= 128 and all(c.isalnum() or c in "-_." for c in value):
        return value
    return None


# --- errors ---------------------------------------------------------------------------------------------


def error_response(error: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    from agent.errors import ApiError, classify
    from identity.errors import IdentityError

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        request.state.request_log.error = error.code
        return error_response(error)

    @app.exception_handler(IdentityError)
    async def identity_error(request: Request, error: IdentityError) -> Response:
        api = classify(error)
        request.state.request_log.error = api.code
        return error_response(api)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        api = ApiError(error.status_code, str(error.detail), "invalid_request_error", code)
        return error_response(api, headers=error.headers)  # e.g. 405's Allow



async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes while reading (a chunked body has no Content-Length)."""
    from agent.errors import ApiError

    too_large = ApiError(413, f"Request body is larger than {limit} bytes.", "invalid_request_error",
                         "request_too_large")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


# --- the OpenAPI schema ---------------------------------------------------------------------------------

CHAT_OPERATION_OPENAPI: dict[str, Any] = {
    "summary": "Chat Completions",
    "operationId": "chat_completions",
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}},
    "responses": {
        "200": {"description": "A `chat.completion`; with `stream: true`, `chat.completion.chunk` events "
                               "(server-sent events) ending in `data: [DONE]`.",
                "content": {"application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}}}},
        "400": {"description": "Invalid JSON or an invalid field (`error.param` names it)."},
        "401": {"description": "Missing or invalid bearer token."},
        "413": {"description": "The body is larger than MAX_REQUEST_BYTES."},
        "502": {"description": "The model or an upstream service failed before any output."},
        "504": {"description": "The model did not answer in time."},
    },
}


def _document_chat_route(app: FastAPI) -> None:
    """Publish the chat route and its body's model in `/openapi.json`.

    The chat route is a plain Starlette route (see `create_app`), which FastAPI does not document, and it
    reads its own body (the size limit applies before parsing, and errors name the field in the OpenAI
    shape), so its operation and body schema are added here.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from agent.schemas import ChatCompletionRequest

            document = generate()
            document.setdefault("paths", {})[CHAT_PATH] = {"post": CHAT_OPERATION_OPENAPI}
            body = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(body.pop("$defs", {}))
            schemas["ChatCompletionRequest"] = body
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# --- the app --------------------------------------------------------------------------------------------


def create_app(env: Mapping[str, str] | None = None) -> FastAPI:
    """Build the app from `env` (default: the process environment over `.env`). No network call here."""
    from agent.chunks import SSE_HEADERS, CompletionWriter
    from agent.errors import ApiError
    from agent.graph import RunOptions
    from agent.model import ModelProvider
    from agent.runner import AgentRunner
    from agent.schemas import RequestInvalid, parse_request, to_langchain_messages
    from agent.streaming import EventStreamResponse, RunOutcome, collect
    from identity.callback import CallbackRoutes
    from identity.context import RequestContext, bind_request_context, reset_request_context
    from identity.service import AgentIdentity
    import tools

    settings = Settings.from_env(load_env() if env is None else env)
    identity = AgentIdentity(settings.identity)
    provider = ModelProvider(settings.agent)
    toolbox = tools.Toolbox(identity, settings.tools)
    runner = AgentRunner(provider, toolbox.tools)
    callback = CallbackRoutes(identity)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await toolbox.aclose()
        await provider.aclose()
        await callback.aclose()
        await identity.aclose()

    app = FastAPI(title="AgentRun identity agent", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.identity = identity
    app.state.model_provider = provider
    _install_error_handlers(app)
    _document_chat_route(app)
    app.add_middleware(RequestLogMiddleware)
    app.include_router(callback.router, prefix="/callback")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)  # probes use HEAD too

    @app.get("/openai/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "agentrun"}
                                           for name in await provider.model_names()]}

    async def chat_completions(request: Request) -> Response:
        entry: RequestLog = request.state.request_log
        entry.session_id = request.query_params.get("sessionId") or request.headers.get("x-agentrun-session-id")
        caller = await identity.authenticate(request.headers.get("authorization"))
        entry.sub = caller.sub
        raw = await read_body(request, settings.server.max_request_bytes)
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "The request body is not valid JSON.", "invalid_request_error",
                           "invalid_json") from None
        except RecursionError:
            raise ApiError(400, "The request body is nested too deeply.", "invalid_request_error",
                           "invalid_json") from None
        try:
            chat = parse_request(body)
        except RequestInvalid as invalid:
            raise ApiError(400, str(invalid), "invalid_request_error", "invalid_value", invalid.param) from None

        known = await provider.model_names()
        model = chat.model if chat.model in known else settings.agent.model_name
        entry.model, entry.stream = model, chat.stream
        writer = CompletionWriter(model=model)
        options = RunOptions(model=model, temperature=chat.temperature, max_tokens=chat.token_limit)

        @contextmanager
        def request_scope(emit) -> Iterator[None]:
            context = RequestContext(caller=caller, session_id=entry.session_id, request_id=entry.request_id,
                                     emit=emit, wait_for_authorization=chat.stream)
            token = bind_request_context(context)
            try:
                yield
            finally:
                reset_request_context(token)

        outcome = RunOutcome()
        items = runner.run(to_langchain_messages(chat.messages), options, request_scope,
                           settings.server.keepalive_seconds if chat.stream else None)

        def log_outcome(outcome: RunOutcome) -> None:
            entry.tokens = outcome.usage.as_dict() if outcome.usage else None
            entry.error = entry.error or outcome.error_code

        if not chat.stream:
            try:
                return JSONResponse(await collect(items, writer, outcome))
            finally:
                log_outcome(outcome)
        return EventStreamResponse(items, writer, include_usage=chat.include_usage, outcome=outcome,
                                   headers=SSE_HEADERS, on_close=log_outcome)

    # A plain Starlette route: the route reads and checks its own request, so FastAPI's request handling
    # (dependency solving, parameter checks) would only add its cost, ~0.1 ms of cold-cache time to first
    # token (bench/RESULTS.md, benchmark 1). Exception handlers apply as to any route. First in the table:
    # the router tries routes in order, and this one serves nearly every request.
    app.router.routes.insert(0, Route(CHAT_PATH, chat_completions, methods=["POST"]))
    return app


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request URL at INFO; keep those (and their query strings) out of the logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Fewer and shorter collector pauses for a long-running server.

    One streamed run allocates thousands of short-lived objects (LangChain messages, chunks, callbacks), so
    with CPython's default threshold the collector ran several times a request and now and then walked the
    whole heap (~90 ms here). What is loaded by now is process-long (modules, the app, the settings):
    `gc.freeze()` takes it out of every later collection. bench/RESULTS.md, benchmark 1, has the figures.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _callback_server(env: Mapping[str, str]) -> tuple[ServerSettings, FastAPI]:
    """`python app.py callback`: the authorization callback alone, for many users, where browsers reach it
    without a bearer token. It needs the server's and identity's variables only (no model, no tools)."""
    from identity.callback import callback_app
    from identity.service import AgentIdentity
    from identity.settings import IdentitySettings

    problems: list[str] = []
    server = identity = None
    try:
        server = ServerSettings.from_env(env)
    except ConfigError as error:
        problems += error.problems
    try:
        identity = IdentitySettings.from_env(env, callback_only=True)
    except ConfigError as error:
        problems += error.problems
    if problems or server is None or identity is None:
        raise ConfigError(problems)
    _configure_logging(server.log_level)
    return server, callback_app(AgentIdentity(identity))


def main(argv: list[str]) -> int:
    env = load_env()
    try:
        if argv[1:2] == ["callback"]:
            settings, app = _callback_server(env)
        else:
            settings = Settings.from_env(env).server  # every package's settings: one message names every problem
            _configure_logging(settings.log_level)
            app = create_app(env)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    import uvicorn

    tune_garbage_collector()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                access_log=False, timeout_keep_alive=75)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
