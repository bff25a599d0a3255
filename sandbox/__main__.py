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
    parser.add_argument("--user", default=DEMO_USER, help=f"demo user for the printed JWT (default {DEMO_USER})")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("Starting the emulators and the agent server...", file=sys.stderr, flush=True)
    sandbox = start_sandbox(args.port, args.user, log_level="info")
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
 The agent runs locally against emulated Agent Identity, STS, DingTalk, IdP and model.

 Chat page:   {sandbox.chat_url}
              (sign in as any user name; the page shows the authorization button and the document)

 A fresh JWT for the demo user "{sandbox.demo_user}" (valid for one hour):
   {sandbox.demo_jwt}

 Try the documented call (streamed):

{example_curl(sandbox.base_url, sandbox.demo_jwt)}

 The stream asks you to authorize DingTalk and waits. Before opening that link, open
 {sandbox.chat_url}?user={sandbox.demo_user} once in the same browser: signing in there tells the
 callback who you are. Then open the link and press Approve; the stream goes on and finishes.
 Document content: {sandbox.base_url}/sandbox/documents/doc123
{rule}
 Ctrl-C stops everything.""".strip("\n")


if __name__ == "__main__":
    sys.exit(main())
