"""`./scripts/rehearse`: the operator's dress rehearsal of a deployment, with no cloud account.

It builds the zip with `./scripts/package` (`dist/agentrun-identity-agent.zip`, the one to upload next; `--zip
PATH` rehearses a zip built before), unpacks it as AgentRun does (`/code`), and starts both deployments
from the unpacked folder alone (`python3 app.py` and `python3 app.py callback`, no site-packages) with the
runtime's Python, each with only the variables the README's deploy section lists for it, plus what the cloud
itself provides (the platform's `FC_*` variables and role credentials, the services' endpoints and the CA that
stands in for the public one, all pointing at the emulators). Then it walks the user's journey: the streamed
call, the authorization link opened by a browser that only follows links, approval, sign-in at the IdP, and
the same stream writing the document. Exit 0 when every step passed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path

import httpx

from emulators import LocalCloud, start_local_cloud
from packager.bytecode import find_interpreter
from packager.deploy_settings import AGENT_VARIABLES, CALLBACK_VARIABLES
from sandbox.browser import LinkFollowingBrowser, page_title
from sandbox.chat_stream import chat_chunks
from sandbox.launcher import DEMO_DOCUMENT, EXAMPLE_PROMPT
from sandbox.process import app_process, free_port

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PYTHON = "3.12"  # AgentRun's runtime (README, "Package and deploy to AgentRun")
# What the cloud gives every instance, not the operator: the endpoints of the services (public defaults in
# production), the role's credentials, and trust in the services' certificates.
CLOUD_PROVIDED = ("AGENT_IDENTITY_DATA_ENDPOINT", "STS_ENDPOINT", "DINGTALK_API_BASE", "OSS_ENDPOINT",
                  "AGENTRUN_CONTROL_ENDPOINT", "MODEL_BASE_URL", "ALIBABA_CLOUD_ACCESS_KEY_ID",
                  "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "SSL_CERT_FILE")
USER = "rehearsal-user"
DEFAULT_ZIP = ROOT / "dist" / "agentrun-identity-agent.zip"  # where ./scripts/package writes it


def deployment_env(cloud: LocalCloud, variables: tuple[str, ...], callback_url: str) -> dict[str, str]:
    """One deployment's environment: the listed variables with the emulated cloud's values, what the cloud
    provides, and Function Compute's own variables (which also make the app apply production's checks)."""
    values = {**cloud.env, "APP_REDIRECT_URI": callback_url}
    unknown = sorted(set(variables) - set(values))
    if unknown:  # a variable the README lists but the emulated cloud cannot fill: the rehearsal would lie
        raise RehearsalFailed(f"the emulators give no value for {', '.join(unknown)}")
    return {**{name: values[name] for name in variables},
            **{name: cloud.env[name] for name in CLOUD_PROVIDED},
            "FC_REGION": cloud.info["region"], "FC_ACCOUNT_ID": cloud.info["account_id"]}


async def walk_the_journey(agent_url: str, jwt: str) -> tuple[str, list[str], str]:
    """The README's streamed call; a browser opens the streamed link, approves and signs in. Returns the
    stream's text, its event types and the browser's last page title."""
    text, events, landing = [], [], ""
    body = {"model": "qwen-plus", "stream": True, "messages": [{"role": "user", "content": EXAMPLE_PROMPT}]}
    async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
        async with client.stream("POST", f"{agent_url}/openai/v1/chat/completions?sessionId=rehearsal",
                                 headers={"Authorization": f"Bearer {jwt}"}, json=body) as response:
            if response.status_code != 200:
                raise RehearsalFailed(f"the agent answered HTTP {response.status_code}: "
                                      f"{(await response.aread())[:300]!r}")
            async for chunk in chat_chunks(response):
                text += [choice["delta"].get("content") or "" for choice in chunk.get("choices") or []]
                event = chunk.get("agent_event")
                if event:
                    events.append(event["type"])
                if event and event["type"] == "authorization_required":
                    browser = LinkFollowingBrowser()
                    try:
                        landing = page_title(await browser.approve_and_sign_in(event["url"], USER))
                    finally:
                        await browser.aclose()
    return "".join(text), events, landing


class RehearsalFailed(Exception):
    """A step did not do what production would; the message says which and why."""


def unpack(zip_path: Path, code: Path) -> None:
    """Unpack as AgentRun does, keeping the files' modes (extractall drops them)."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(code)
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if mode:
                os.chmod(code / info.filename, mode & 0o777)


def rehearse(work: Path, zip_path: Path | None, say: Callable[[str], None]) -> None:
    python = find_interpreter(RUNTIME_PYTHON)
    version = RUNTIME_PYTHON if python else "%d.%d" % sys.version_info[:2]
    if python is None:
        python = sys.executable
        say(f"NOTE  Python {RUNTIME_PYTHON}, AgentRun's runtime, was not found: rehearsing with Python "
            f"{version} instead. This zip is not the one to upload (install python{RUNTIME_PYTHON}, or set "
            "PACKAGE_PYTHON).")
    started = time.monotonic()
    if zip_path is None:
        zip_path = DEFAULT_ZIP
        subprocess.run([str(ROOT / "scripts" / "package"), "--python-version", version, "--output",
                        str(zip_path)], check=True, stdout=sys.stderr)
    code = work / "code"
    unpack(zip_path, code)
    say(f"PASS  {zip_path} unpacked ({zip_path.stat().st_size / 2**20:.1f} MiB, "
        f"{time.monotonic() - started:.0f} s); both deployments run it with {python} ({version})")
    with ExitStack() as stack:
        cloud = stack.enter_context(start_local_cloud())
        callback_port = free_port()
        callback_url = f"http://127.0.0.1:{callback_port}"
        cloud.register_return_url(f"{callback_url}/callback")
        envs: Mapping[str, dict[str, str]] = {
            "callback": deployment_env(cloud, CALLBACK_VARIABLES, callback_url),
            "agent": deployment_env(cloud, AGENT_VARIABLES, callback_url)}
        logs = work / "logs"
        logs.mkdir()
        for name, args, port in (("callback", ("callback",), callback_port), ("agent", (), free_port())):
            url = stack.enter_context(app_process(envs[name], *args, port=port, code_dir=code, python=python,
                                                  isolated=True, log_path=logs / f"{name}.log"))
            say(f"PASS  {name} started from the zip at {url} with {', '.join(sorted(envs[name]))}")
        agent_url = url
        text, events, landing = asyncio.run(walk_the_journey(agent_url, cloud.issue_user_jwt(USER)))
        if "authorization_required" not in events:
            raise RehearsalFailed(f"the stream showed no authorization link (events: {events})")
        say("PASS  the stream showed the authorization link")
        if landing != "Authorization complete":
            raise RehearsalFailed(f"the browser ended on the page {landing!r}, not 'Authorization complete'")
        say("PASS  a browser approved and signed in at the IdP; the callback completed the authorization")
        document = httpx.get(f"{cloud.url('dingtalk')}/emulator/documents/{DEMO_DOCUMENT}",
                             verify=cloud.ssl_context(), trust_env=False, timeout=10)
        if "authorization_completed" not in events or document.json().get("content") != "Helloworld":
            raise RehearsalFailed(f"the same stream did not write the document: events {events}, "
                                  f"text {text[-300:]!r}")
        say(f"PASS  the same stream went on and wrote {DEMO_DOCUMENT}: {text.strip().splitlines()[-1]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/rehearse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", type=Path, metavar="PATH",
                        help=f"rehearse this zip instead of building {DEFAULT_ZIP.relative_to(ROOT)}")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="rehearse-") as work:
        try:
            rehearse(Path(work), args.zip.resolve() if args.zip else None, say)
        except (RehearsalFailed, subprocess.CalledProcessError, OSError) as error:
            say(f"FAIL  {error}")
            for log in sorted(Path(work).glob("logs/*.log")):
                say(f"----- the end of {log.stem}'s output -----\n{log.read_text(errors='replace')[-3000:]}")
            return 1
    say(f"Rehearsal passed: {args.zip or DEFAULT_ZIP.relative_to(ROOT)} runs as the README deploys it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
