"""The agent server's entry point.

    python app.py            serve on HOST:FC_CUSTOM_LISTEN_PORT|PORT|9000
    python app.py callback   serve only the OAuth2 authorization callback (same host and port variables)

Start-up reads and checks every setting (settings/), opens the port, and builds the app (wiring/)
in a thread meanwhile (server/starting.py): `/health` answers at once, other requests wait for the app.
"""

from __future__ import annotations

import os
import sys

# AgentRun offers python3.10 and python3.12 (docs/services.md, AgentRun): on 3.10 the imports below would die
# with "cannot import name 'Self'", which says nothing about the runtime to choose.
if sys.version_info < (3, 11):
    sys.exit(f"This agent needs Python 3.11 or newer, not {sys.version.split()[0]}: choose the python3.12 "
             "runtime for it in AgentRun.")

# AgentRun's zip layout puts dependencies in ./python, which is not on sys.path (docs/services.md, AgentRun).
# This must run before any third-party import.
_HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(_HERE, "python"), _HERE):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.insert(0, _path)

import gc  # noqa: E402

if __name__ == "__main__":
    # What start-up allocates lives as long as the process (modules, classes, schemas): collecting it finds
    # nothing to free. tune_garbage_collector turns the collector back on once the app is built (figures:
    # docs/architecture.md, "Start-up").
    gc.disable()

import asyncio  # noqa: E402
import signal  # noqa: E402

from starlette.types import ASGIApp  # noqa: E402

from server.logs import configure_logging  # noqa: E402
from server.serving import serve  # noqa: E402
from server.shutdown import Shutdown  # noqa: E402
from server.starting import StartingApp  # noqa: E402
from settings import CallbackSettings, ConfigError, Settings, load_env  # noqa: E402
from settings.identity import log_waived_verification  # noqa: E402
from settings.server import log_open_cors  # noqa: E402
from tools import TOOLS  # noqa: E402
from tools.tool import oauth2_providers  # noqa: E402

# Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def build_app(settings: Settings | CallbackSettings, shutdown: Shutdown) -> ASGIApp:
    """The app for `settings`, then the collector tuned for a server. Runs in a thread while the port is
    already open (server/starting.py): wiring/ imports FastAPI, the SDKs and, for the agent, LangChain."""
    if isinstance(settings, CallbackSettings):
        from wiring.callback_app import create_callback_app

        app = create_callback_app(settings, shutdown)
    else:
        from wiring.agent_app import create_app

        app = create_app(settings, shutdown=shutdown)
    tune_garbage_collector()
    return app


def tune_garbage_collector() -> None:
    """Fewer and shorter collector pauses for a long-running server: what is loaded by now is process-long
    (modules, the app, the settings), so `gc.freeze()` takes it out of every later collection; a run's
    short-lived objects (messages, chunks, callbacks) are collected young, with a threshold sized for a
    request rather than CPython's default."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    gc.enable()


def main(argv: list[str]) -> int:
    env = load_env()
    callback_only = argv[1:2] == ["callback"]
    try:
        settings = CallbackSettings.from_env(env) if callback_only else \
            Settings.from_env(env, oauth2_providers(TOOLS))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.server.log_level, settings.server.log_format)
    if isinstance(settings, Settings):
        log_waived_verification(settings.identity)
        log_open_cors(settings.server)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings | CallbackSettings) -> int:
    """Serve until SIGTERM or SIGINT (0), or until the app fails to build (1)."""
    stop, shutdown = asyncio.Event(), Shutdown()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    server = settings.server
    app = StartingApp(lambda: build_app(settings, shutdown), shutdown, on_failure=stop.set,
                      max_waiting=server.limits.max_concurrent_requests)
    await serve(app, server.server_limits, shutdown, host=server.host, port=server.port, stop=stop)
    return 1 if app.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
