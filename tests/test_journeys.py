"""The journeys people take, from where they start: a fresh clone with no virtualenv, and the zip.

- The newcomer: `./scripts/sandbox --port P --callback-port Q` in a fresh copy of this tree, where the script
  makes its own virtualenv from what it installs itself; the printed curl command runs unchanged; the streamed
  link opens in a cookie-less Chromium that approves and signs in as the printed user; the same curl stream
  ends with `[DONE]` and the document holds the text.
- The operator: `./scripts/rehearse` builds the zip with `./scripts/package`, starts both deployments from it
  with only the README's variables, and walks the same journey.
- `./scripts/smoke-cloud` with no cloud account says what is missing and skips.

The virtualenv the scripts build is kept between runs in the user's cache folder, keyed by the lock files'
hash: it holds exactly what `./scripts/sandbox` installs (a test checks it), so a change to any lock builds
a new one from nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.txt", "requirements-sandbox.txt")
CURL = shutil.which("curl")
# A fresh venv installs ~150 packages from the registry; the journey itself takes seconds.
SCRIPT_TIMEOUT_SECONDS = 600

pytestmark = pytest.mark.timeout(2 * SCRIPT_TIMEOUT_SECONDS)


def scripts_venv() -> Path:
    """The scripts' virtualenv for these lock files and this Python, kept between test runs."""
    key = hashlib.sha256(b"".join((ROOT / lock).read_bytes() for lock in LOCKS)
                         + os.fsencode(os.path.realpath(shutil.which("python3") or ""))).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "agentrun-identity-agent" / f"scripts-venv-{key}"


def person_env(venv: Path) -> dict[str, str]:
    """What a person's shell has: no virtualenv or PYTHONPATH of ours, no proxy; VENV names the cached one."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "PIP_FIND_LINKS", "PIP_CERT",
            "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_DEFAULT_TIMEOUT", "PIP_CONFIG_FILE")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    bin_dir = str(Path(sys.executable).parent)  # our own venv must not come first on PATH
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != bin_dir)
    return {**env, "VENV": str(venv)}


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This tree as a fresh clone has it: every file git tracks or would track, nothing it ignores."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    clone = tmp_path_factory.mktemp("clone") / "agent"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a deleted file is still listed until the deletion is staged
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    assert not (clone / ".venv").exists()
    return clone


@pytest.fixture(scope="module")
def venv() -> Path:
    return scripts_venv()


@pytest.fixture
def sandbox_banner(fresh_clone: Path, venv: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`./scripts/sandbox --port P --callback-port Q` in the fresh clone, until its banner is printed."""
    from sandbox.process import free_port

    process = subprocess.Popen(["./scripts/sandbox", "--port", str(free_port()), "--callback-port",
                                str(free_port())], cwd=fresh_clone, env=person_env(venv),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        banner = ""
        for line in process.stdout or ():
            banner += line
            if "Ctrl-C stops everything" in line:
                break
        else:
            pytest.fail(f"./scripts/sandbox exited {process.wait()} before its banner:\n"
                        f"{(process.stderr.read() if process.stderr else '')[-4000:]}")
        yield banner, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"Chromium not found at {CHROMIUM}")
@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_a_newcomer_runs_the_sandbox_from_a_fresh_clone_and_the_printed_curl_writes_the_document(
        sandbox_banner: tuple[str, subprocess.Popen[str]], venv: Path) -> None:
    banner, sandbox = sandbox_banner
    curl_command = re.search(r"^(curl -N .*?-d '.*?')$", banner, re.S | re.M).group(1)
    user = re.search(r'A fresh JWT for the demo user "([^"]+)"', banner).group(1)
    document_url = re.search(r"Document content: (\S+)", banner).group(1)

    curl = await asyncio.create_subprocess_exec("bash", "-c", curl_command, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=person_env(venv))
    events, lines = [], []
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = await chromium.new_context()  # no cookie: a browser that has only the link
        try:
            async for raw in curl.stdout:
                line = raw.decode().rstrip("\n")
                lines.append(line)
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:]).get("agent_event")
                events.append(event and event["type"])
                if event and event["type"] == "authorization_required":
                    page = await context.new_page()
                    await page.goto(event["url"])
                    await page.get_by_role("button", name="Approve").click()
                    await page.get_by_label("User name").fill(user)
                    await page.get_by_role("button", name="Sign in").click()
                    await page.get_by_text("Authorization complete").wait_for()
        finally:
            await context.close()
            await chromium.close()
    assert await asyncio.wait_for(curl.wait(), 30) == 0, await curl.stderr.read()

    assert "authorization_required" in events and "authorization_completed" in events
    assert [line for line in lines if line.startswith("data: ")][-1] == "data: [DONE]"
    document = httpx.get(document_url, trust_env=False, timeout=10).json()
    assert document["content"] == "Helloworld"

    os.killpg(sandbox.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole process group
    assert sandbox.wait(30) == 0
    assert "Sandbox stopped." in (sandbox.stderr.read() if sandbox.stderr else "")


def test_the_scripts_venv_holds_exactly_what_the_sandbox_script_installs(fresh_clone: Path, venv: Path) -> None:
    """Nothing of the test set (pytest, playwright...) can make the sandbox work by accident."""
    helped = subprocess.run(["./scripts/sandbox", "--help"], cwd=fresh_clone, env=person_env(venv),
                            capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_SECONDS)
    assert helped.returncode == 0 and "--callback-port" in helped.stdout, helped.stderr[-3000:]
    frozen = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all",
                             "--disable-pip-version-check"], capture_output=True, text=True, check=True).stdout
    installed = {_normalised(line.split("==")[0]) for line in frozen.splitlines() if "==" in line}
    assert installed - {"pip", "setuptools", "wheel"} == _pins("requirements-sandbox.txt")


@pytest.fixture(scope="module")
def rehearsal(fresh_clone: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """`./scripts/rehearse` in the fresh clone: it builds dist/agentrun-identity-agent.zip there."""
    return subprocess.run(["./scripts/rehearse"], cwd=fresh_clone, env=person_env(venv), capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT_SECONDS)


def test_the_operator_rehearses_the_deployment_from_the_zip(
        rehearsal: subprocess.CompletedProcess[str], fresh_clone: Path) -> None:
    assert rehearsal.returncode == 0, rehearsal.stdout[-4000:] + rehearsal.stderr[-4000:]
    out = rehearsal.stdout
    assert "PASS  " + str(fresh_clone / "dist" / "agentrun-identity-agent.zip") + " unpacked" in out
    assert "[3/3] Done in" in rehearsal.stderr  # ./scripts/package built it
    if shutil.which("python3.12") is None:
        assert "Python 3.12, AgentRun's runtime, was not found" in out
    else:
        assert "(3.12)" in out
    agent_line = re.search(r"PASS  agent started from the zip at \S+ with (.*)", out).group(1)
    callback_line = re.search(r"PASS  callback started from the zip at \S+ with (.*)", out).group(1)
    assert "MODEL_API_KEY" in agent_line and "MODEL_API_KEY" not in callback_line
    assert "the same stream went on and wrote doc123" in out
    assert "Rehearsal passed: dist/agentrun-identity-agent.zip runs as the README deploys it." in out


def test_the_benchmarks_run_as_the_readme_gives_them(
        rehearsal: subprocess.CompletedProcess[str], fresh_clone: Path) -> None:
    """From a clone where ./scripts/test made the venv (the benchmarks use its psutil): each benchmark once
    at its smallest size, the cold start from the zip the rehearsal built."""
    assert rehearsal.returncode == 0
    zip_path = fresh_clone / "dist" / "agentrun-identity-agent.zip"
    env = {**person_env(Path(sys.prefix)), "PYTHONDONTWRITEBYTECODE": "1"}
    for command in (["-m", "bench.run_all", "--smoke", "--zip", str(zip_path)],
                    ["-m", "bench.vs_naive", "--users", "1", "--requests-per-user", "1"]):
        done = subprocess.run([sys.executable, *command], cwd=fresh_clone, env=env, capture_output=True,
                              text=True, timeout=SCRIPT_TIMEOUT_SECONDS)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "Benchmark 2" in done.stdout


def test_smoke_cloud_without_a_cloud_account_says_what_is_missing(fresh_clone: Path, venv: Path) -> None:
    done = subprocess.run(["./scripts/smoke-cloud"], cwd=fresh_clone, env=person_env(venv), capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT_SECONDS)

    assert done.returncode == 3, done.stdout + done.stderr  # a skipped check is no pass
    assert "SKIP" in done.stdout + done.stderr
    assert "SMOKE_USER_JWT" in done.stdout + done.stderr


def _pins(lock: str) -> set[str]:
    """The distributions a lock file pins, following its `-r` includes."""
    names: set[str] = set()
    for line in (ROOT / lock).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= _pins(line[3:].strip())
        elif "==" in line:
            names.add(_normalised(line.split("==")[0]))
    return names


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_script_reproduces_the_lock_on_a_fresh_clone(fresh_clone: Path, venv: Path) -> None:
    """`./scripts/lock` on an unchanged requirements.in changes nothing: the lock is what the list resolves to."""
    before = (fresh_clone / "requirements.txt").read_bytes()
    try:
        done = subprocess.run(["./scripts/lock"], cwd=fresh_clone, env=person_env(venv), capture_output=True,
                              text=True, timeout=SCRIPT_TIMEOUT_SECONDS)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (fresh_clone / "requirements.txt").read_bytes() == before
    finally:
        (fresh_clone / "requirements.txt").write_bytes(before)


@pytest.mark.skipif(shutil.which("plantuml") is None and not (os.geteuid() == 0 and shutil.which("apt-get")),
                    reason="plantuml is not installed and cannot be (apt-get as root)")
def test_the_diagrams_script_renders_the_committed_images(fresh_clone: Path, venv: Path) -> None:
    """The images in the README are what their sources render to today."""
    done = subprocess.run(["./scripts/diagrams"], cwd=fresh_clone, env=person_env(venv), capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT_SECONDS)

    assert done.returncode == 0, done.stderr[-3000:]
    rendered = re.findall(r"^(images/\S+\.svg)$", done.stderr, re.M)
    assert "images/consent-sequence.svg" in rendered
    for image in rendered:
        assert (fresh_clone / image).read_text() == (ROOT / image).read_text(), f"{image} is stale"
