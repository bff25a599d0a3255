"""Cold start of `python app.py`: process start -> first `/health` answer, and -> first chat byte and answer.

    .venv/bin/python -m bench.cold_start [--runs N]            app.py from this checkout, with .venv's Python
    .venv/bin/python -m bench.cold_start --zip [--runs 10]     from the AgentRun zip, as AgentRun runs it

Each run starts the emulators once (their own process), then starts app.py fresh N times against them and
times, from `Popen`:
- `health`: the first `GET /health` answered 200 (what the platform's health check sees: the port opens once
  the settings are checked, while the app is still being built; server/starting.py);
- `first_byte`: then the first body byte of one streamed chat completion (the request waits for the app,
  which imports LangChain, the model client and the SDKs; the model client is made on this first request);
- `first_chat`: that chat's last byte;
plus the server's RSS after that first chat. Median and max over the runs.

`--zip` (issue 18) builds the zip with `scripts/package` for Python 3.12 (or takes `--zip PATH`), unpacks it
into a read-only folder and starts `python3.12 -B -E -s -S app.py` there (as root, a read-only mode does not
stop `.pyc` writes, and -E ignores PYTHONDONTWRITEBYTECODE; -B stops them), so every start is as cold as a
fresh instance on a read-only `/code`. Next to it, a bare `import langchain.agents, langchain_openai` from the
same folder, timed from `Popen` to exit, the zip's size, and the callback deployment's start (`app.py
callback`: its first `/health` and its first `/callback` page). Min, median and max over the runs, of wall
time and of the CPU time the process used (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench._cloud import ROOT, app_server, clean_env, local_cloud
from bench._harness import rss_mb
from packager.bytecode import find_interpreter

TARGET_PYTHON = "3.12"
BARE_IMPORT = "import sys; sys.path.insert(0, 'python'); import langchain.agents, langchain_openai"


@dataclass(frozen=True)
class UnpackedZip:
    code: Path  # the read-only folder the zip was unpacked into (AgentRun's /code)
    python: str  # the interpreter of the runtime it was built for
    zip_mib: float
    unpacked_mib: float


def one_run(cloud, code_dir: Path | None = None, python: str | None = None) -> dict[str, float]:
    where = {"code_dir": code_dir, "python": python} if code_dir and python else {}
    headers = {"Authorization": f"Bearer {cloud.user_jwt('alice')}"}  # before the clock starts
    with app_server(cloud.env, **where, wait_for_app=False) as server:
        began = time.perf_counter() - server.started_s
        cpu_health = _cpu_s(server.process.pid)
        body = {"messages": [{"role": "user", "content": "hello there"}], "stream": True}
        with httpx.stream("POST", server.chat_url, json=body, headers=headers, timeout=60,
                          trust_env=False) as response:
            response.raise_for_status()
            chunks = response.iter_bytes()
            next(chunks)
            first_byte = time.perf_counter() - began
            for _ in chunks:
                pass
        first_chat = time.perf_counter() - began
        return {"health_s": server.started_s, "first_byte_s": first_byte, "first_chat_s": first_chat,
                "cpu_health_s": cpu_health, "cpu_first_chat_s": _cpu_s(server.process.pid),
                "rss_mb": rss_mb(server.process.pid)}


def callback_run(cloud, code_dir: Path, python: str) -> dict[str, float]:
    """`python app.py callback` (the callback deployment): process start -> first `/health`, and -> the
    first `/callback` page (a link without its state: the 400 page, which only the built app gives)."""
    with app_server(cloud.env, code_dir=code_dir, python=python, wait_for_app=False,
                    args=("callback",)) as server:
        began = time.perf_counter() - server.started_s
        page = httpx.get(f"{server.url}/callback", timeout=60, trust_env=False)
        assert page.status_code == 400 and "text/html" in page.headers["content-type"], page.status_code
        return {"health_s": server.started_s, "page_s": time.perf_counter() - began,
                "rss_mb": rss_mb(server.process.pid)}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: steadier than wall time on a shared machine."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


@contextlib.contextmanager
def unpacked_zip(zip_path: Path | None = None) -> Iterator[UnpackedZip]:
    """The AgentRun zip (built now for Python 3.12 unless `zip_path` is given), unpacked read-only."""
    python = find_interpreter(TARGET_PYTHON)
    if python is None:
        raise SystemExit(f"python{TARGET_PYTHON} is needed to start the zip as AgentRun's runtime does")
    with tempfile.TemporaryDirectory(prefix="bench-zip-") as tmp:
        if zip_path is None:
            zip_path = Path(tmp) / "agent.zip"
            subprocess.run([str(ROOT / "scripts" / "package"), "--python-version", TARGET_PYTHON,
                            "--output", str(zip_path)], cwd=ROOT, env=clean_env(), check=True,
                           stdout=subprocess.DEVNULL)
        code = Path(tmp) / "code"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(code)
            unpacked = sum(info.file_size for info in archive.infolist())
        for path in [*code.rglob("*"), code]:
            path.chmod(path.stat().st_mode & 0o555)
        try:
            yield UnpackedZip(code, python, zip_path.stat().st_size / 2**20, unpacked / 2**20)
        finally:
            for path in [code, *code.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)  # so the temporary directory can be removed


def bare_import(code: Path, python: str) -> dict[str, float]:
    """`python -E -s -S -c 'import langchain.agents, langchain_openai'` from the folder, Popen to exit: wall
    and CPU seconds."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([python, "-B", "-E", "-s", "-S", "-c", BARE_IMPORT], cwd=code, env=clean_env(), check=True)
    wall = time.perf_counter() - began
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "cpu_s": cpu.ru_utime - cpu_before.ru_utime + cpu.ru_stime - cpu_before.ru_stime}


def _row(label: str, values: list[float]) -> str:
    return (f"  {label:48s} min {min(values):6.3f}   median {statistics.median(values):6.3f}   "
            f"max {max(values):6.3f}")


def measure_zip(runs: int, zip_path: Path | None) -> None:
    with unpacked_zip(zip_path) as package, local_cloud() as cloud:
        bare = [bare_import(package.code, package.python) for _ in range(runs)]
        starts = [one_run(cloud, package.code, package.python) for _ in range(runs)]
        callbacks = [callback_run(cloud, package.code, package.python) for _ in range(runs)]
    print(f"cold start from the zip ({package.zip_mib:.1f} MiB, {package.unpacked_mib:.1f} MiB unpacked), "
          f"read-only folder, -B, {package.python}, {runs} fresh processes, seconds:")
    for label, key, series in (
            ("bare `import langchain.agents, langchain_openai`", "wall_s", bare),
            ("process start -> first /health 200", "health_s", starts),
            ("process start -> first streamed chat byte", "first_byte_s", starts),
            ("process start -> first chat completion answered", "first_chat_s", starts),
            ("CPU s of the bare import", "cpu_s", bare),
            ("CPU s of app.py until the first /health", "cpu_health_s", starts),
            ("CPU s of app.py until the first chat answered", "cpu_first_chat_s", starts),
            ("RSS after the first chat (MB)", "rss_mb", starts),
            ("callback: process start -> first /health 200", "health_s", callbacks),
            ("callback: process start -> first /callback page", "page_s", callbacks),
            ("callback: RSS after that page (MB)", "rss_mb", callbacks)):
        print(_row(label, [r[key] for r in series]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="fresh processes (default 5; 10 with --zip)")
    parser.add_argument("--zip", nargs="?", const="", default=None, metavar="PATH",
                        help="start from the AgentRun zip (built now when no PATH is given)")
    args = parser.parse_args()
    if args.zip is not None:
        measure_zip(args.runs or 10, Path(args.zip).resolve() if args.zip else None)
        return
    runs_count = args.runs or 5
    with local_cloud() as cloud:
        runs = [one_run(cloud) for _ in range(runs_count)]
    print(f"cold start of `python app.py` against the local emulators, {runs_count} fresh processes:")
    for key, label in (("health_s", "process start -> first /health 200"),
                       ("first_byte_s", "process start -> first streamed chat byte"),
                       ("first_chat_s", "process start -> first chat completion answered"),
                       ("rss_mb", "RSS after the first chat (MB)")):
        values = [r[key] for r in runs]
        print(f"  {label:48s} median {statistics.median(values):7.3f}   max {max(values):7.3f}")


if __name__ == "__main__":
    main()
