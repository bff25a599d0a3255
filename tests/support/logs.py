"""The request log as a test reads it."""

from __future__ import annotations

import json
import time


def request_log_lines(caplog) -> list[dict]:
    """The request log lines written so far; the line is written when the response ends, so wait a little."""
    for _ in range(100):
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "app.request"]
        if lines:
            return lines
        time.sleep(0.01)
    return []
