"""The local sandbox: every emulator, the agent server, its OAuth2 callback and the chat page, in one process.

`./scripts/sandbox` (or `python -m sandbox`) runs it until Ctrl-C; tests use `start_sandbox()` directly.
"""

from sandbox.launcher import Sandbox, example_curl, start_sandbox

__all__ = ["Sandbox", "example_curl", "start_sandbox"]
