"""The pinned JavaScript clients (tests/js_clients: openai npm, the Vercel AI SDK, AG-UI's HttpAgent), run
by Node.js against a local server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

CLIENTS_DIR = Path(__file__).resolve().parent.parent / "js_clients"
NODE = shutil.which("node")


async def run_client(client: str, server: str, api_key: str, prompt: str, scenario: str = "stream",
                     on_link=None, follow_up: str | None = None, idempotency_key: str | None = None) -> dict:
    """Run the client; `on_link(url)` runs as soon as the client has shown an authorization link."""
    process = await asyncio.create_subprocess_exec(
        NODE, "clients.mjs", json.dumps({"client": client, "server": server, "apiKey": api_key,
                                         "scenario": scenario, "prompt": prompt, "followUp": follow_up,
                                         "idempotencyKey": idempotency_key}),
        cwd=CLIENTS_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    result = None
    async with asyncio.timeout(90):
        assert process.stdout is not None
        async for raw in process.stdout:
            line = json.loads(raw)
            if "link" in line and on_link is not None:
                await on_link(line["link"])
            elif "link" not in line:
                result = line
        await process.wait()
    assert process.returncode == 0 and result is not None, (await process.stderr.read()).decode()[-2000:]
    return result
