"""Debian's Chromium for the browser tests (scripts/test installs it), driven by Playwright with
`executable_path`, so no browser download is needed; a test without it is skipped, saying why."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# As root in a closed network: no sandbox, and none of Chromium's own background connections.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                    reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium; "
                                           "scripts/test does it)")
