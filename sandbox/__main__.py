"""`python -m sandbox`: run the whole product locally with no cloud account, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from sandbox.launcher import DEMO_USER, example_curl, start_sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=9000, help="agent server port (default 9000, as AgentRun)")
    parser.add_argument("--callback-port", type=int, default=8090,
                        help="port of the callback process (`python app.py callback`; default 8090)")
    parser.add_argument("--user", default=DEMO_USER, help=f"demo user for the printed JWT (default {DEMO_USER})")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("Starting the emulators, the agent server and the callback...", file=sys.stderr, flush=True)
    sandbox = start_sandbox(args.port, args.user, callback_port=args.callback_port, log_level="info")
    try:
        print(_banner(sandbox), flush=True)
        stop.wait()
    finally:
        print("\nStopping...", file=sys.stderr, flush=True)
        sandbox.stop()
    print("Sandbox stopped.", file=sys.stderr)
    return 0


def _banner(sandbox) -> str:
    rule = "-" * 78
    return f"""
{rule}
 The agent runs locally against emulated Agent Identity, STS, DingTalk, IdP and model;
 the authorization callback runs beside it as `python app.py callback`.

 Chat page:   {sandbox.chat_url}
              (sign in as any user name; the page shows the authorization button and the document)

 A fresh JWT for the demo user "{sandbox.demo_user}" (valid for one hour):
   {sandbox.demo_jwt}

 Try the documented call (streamed):

{example_curl(sandbox.base_url, sandbox.demo_jwt)}

 The stream shows an authorization link and waits. Open the link in a browser, press Approve, then
 sign in at the local IdP as "{sandbox.demo_user}" (the callback, {sandbox.callback_url}/callback, runs as
 its own process, like a second AgentRun deployment, and must know who you are). The page says
 "Authorization complete" and the curl stream goes on by itself.
 Document content: {sandbox.base_url}/sandbox/documents/doc123
{rule}
 Ctrl-C stops everything.""".strip("\n")


if __name__ == "__main__":
    sys.exit(main())
