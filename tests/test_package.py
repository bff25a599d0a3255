"""The AgentRun zip: what goes in, which wheels fit the runtime, and that the app starts from the zip alone.

The end-to-end test builds a real zip (pip fetches the pinned wheels from the package registry, as
`scripts/test` does when it installs), unpacks it into a temporary folder and starts `python3 app.py` there
the way AgentRun does, with no site-packages and no PYTHONPATH, so only the zip's contents can be imported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from emulators import start_local_cloud
from packager.build import BuiltPackage, build
from packager.bytecode import compile_tree, find_interpreter
from packager.contents import app_files
from packager.deploy_settings import console_settings
from packager.wheels import PackagingError, Target, pinned, validate, wheel_tags
from sandbox.process import app_process, free_port
from tests.support.deployment import DINGTALK_PROMPT, LinkFollowingBrowser, page_title, stream_chat
from tests.support.e2e import document_content_at

ROOT = Path(__file__).resolve().parent.parent


# ---- what goes into the zip ---------------------------------------------------------------------------------

def _write(path: Path, text: str = "x = 1\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_only_runtime_code_is_packaged(tmp_path: Path) -> None:
    for name in ("app.py", "config.py", "requirements.txt", "agent/__init__.py", "agent/graph.py",
                 "identity/__init__.py", "tools/__init__.py", "tools/dingtalk.py",
                 # development-only packages and folders
                 "tests/__init__.py", "tests/test_x.py", "emulators/__init__.py", "bench/__init__.py",
                 "sandbox/__init__.py", "packager/__init__.py", "web/index.html", "docs/architecture.md",
                 # caches, VCS data and secrets, wherever they are
                 ".env", ".env.local", ".config.json", "agent/__pycache__/graph.cpython-311.pyc",
                 "identity/signing.pem", "tools/.env", ".git/config", "dist/old.zip", "README.md"):
        _write(tmp_path / name)

    packaged = sorted(name for _, name in app_files(tmp_path))

    assert packaged == ["agent/__init__.py", "agent/graph.py", "app.py", "config.py", "identity/__init__.py",
                        "requirements.txt", "tools/__init__.py", "tools/dingtalk.py"]


def test_a_new_runtime_package_is_picked_up_without_configuration(tmp_path: Path) -> None:
    _write(tmp_path / "app.py")
    _write(tmp_path / "memory/__init__.py")
    _write(tmp_path / "memory/store.py")
    _write(tmp_path / "notes/readme.py")  # not a package: no __init__.py

    assert sorted(name for _, name in app_files(tmp_path)) == ["app.py", "memory/__init__.py", "memory/store.py"]


# ---- the target runtime -------------------------------------------------------------------------------------

def test_python_310_is_refused_with_the_reason() -> None:
    with pytest.raises(PackagingError, match="Python >= 3.11.*python3.12"):
        validate(Target(python_version="3.10"))


def test_unknown_platforms_are_refused() -> None:
    with pytest.raises(PackagingError, match="unsupported platform 'macosx_11_0_arm64'"):
        validate(Target(platforms=("macosx_11_0_arm64",)))


def test_supported_tags_follow_the_target_python_and_glibc() -> None:
    supported = {str(tag) for tag in Target(python_version="3.12").supported_tags()}

    assert {"cp312-cp312-manylinux_2_17_x86_64", "cp312-abi3-manylinux2014_x86_64",
            "cp312-cp312-manylinux_2_28_x86_64", "py3-none-any"} <= supported
    assert "cp311-cp311-manylinux_2_17_x86_64" not in supported
    assert "cp312-cp312-manylinux_2_34_x86_64" not in supported  # newer glibc than the runtime guarantees
    assert not any("macosx" in tag or "win" in tag or "aarch64" in tag for tag in supported)


def test_missing_entry_file_fails_before_any_download(tmp_path: Path) -> None:
    _write(tmp_path / "requirements.txt", "")
    with pytest.raises(PackagingError, match="app.py is missing"):
        build(tmp_path, tmp_path / "out.zip", Target(), progress=lambda _: None)


def test_a_build_without_the_runtime_python_says_how_to_get_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PACKAGE_PYTHON", raising=False)
    with pytest.raises(PackagingError, match=r"python3\.99 was not found.*PACKAGE_PYTHON"):
        compile_tree(tmp_path, "3.99", progress=lambda _: None)


# ---- the real zip, unpacked and started ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Target]:
    """Build the zip for AgentRun's Python 3.12 when this machine has a 3.12 to try it with, else for our own."""
    version = "3.12" if find_interpreter("3.12") else "%d.%d" % sys.version_info[:2]
    interpreter = find_interpreter(version) or sys.executable
    target = Target(python_version=version)
    out = tmp_path_factory.mktemp("zip") / "agentrun.zip"
    package = build(ROOT, out, target, progress=lambda _: None)
    assert package.size_bytes == out.stat().st_size > 0
    code = tmp_path_factory.mktemp("code")  # stands for AgentRun's /code
    with zipfile.ZipFile(out) as archive:
        archive.extractall(code)
        for info in archive.infolist():  # keep the executable bits extractall drops
            mode = info.external_attr >> 16
            if mode:
                os.chmod(code / info.filename, mode & 0o777)
    return code, interpreter, target


pytestmark_app = pytest.mark.skipif(not (ROOT / "app.py").exists(), reason="app.py has not landed yet")


@pytestmark_app
def test_the_zip_holds_the_app_and_no_development_files(unpacked: tuple[Path, str, Target]) -> None:
    code, _, _ = unpacked
    top = {path.name for path in code.iterdir()}

    assert {"app.py", "outbound.py", "python", "agent", "identity", "settings", "tools"} <= top
    assert not top & {"tests", "emulators", "bench", "sandbox", "packager", "scripts", "web", ".env", ".git",
                      "README.md", ".venv", "images"}
    assert not (code / "python" / "bin").exists()
    dependencies = {path.name for path in (code / "python").iterdir()}
    assert not dependencies & {"utils", "setuptools", "_distutils_hack", "pkg_resources"}  # requirements-nodeps.in


@pytestmark_app
def test_every_wheel_fits_the_target_interpreter(unpacked: tuple[Path, str, Target]) -> None:
    code, interpreter, target = unpacked
    # The target interpreter itself says which tags it accepts (packaging comes from the zip).
    accepted = subprocess.run(
        [interpreter, "-E", "-s", "-S", "-c",
         "import sys; sys.path.insert(0, 'python'); from packaging import tags; "
         "print('\\n'.join(str(t) for t in tags.sys_tags()))"],
        cwd=code, capture_output=True, text=True, check=True).stdout.split()
    installed = wheel_tags(code / "python")

    assert len(installed) > 50
    misfits = {dist: [str(t) for t in declared] for dist, declared in installed.items()
               if not set(map(str, declared)) & set(accepted)}
    assert misfits == {}
    platforms = {t.platform for declared in installed.values() for t in declared}
    assert all(p == "any" or (p.startswith("manylinux") and p.endswith("x86_64")) for p in platforms), platforms


# ---- bytecode for the runtime's Python (a read-only /code must not mean compiling at every start) ----------

def _pyc_flags(pyc: Path) -> int:
    """PEP 552 flags of a .pyc: 0b01 hash-based, 0b10 check the source's hash."""
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


@pytestmark_app
def test_every_python_file_ships_checked_hash_bytecode_for_the_target(
        unpacked: tuple[Path, str, Target]) -> None:
    code, interpreter, _ = unpacked
    tag = subprocess.run([interpreter, "-c", "import sys; print(sys.implementation.cache_tag)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    sources = {p for p in code.rglob("*.py")}
    compiled = {p for p in code.rglob("*.pyc")}
    expected = {p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc" for p in sources}

    assert len(sources) > 1000
    assert expected - compiled == set()  # compileall skips nothing (a file that failed would be missing)
    assert compiled - expected == set()  # and ships no bytecode for another Python or without its source
    assert {_pyc_flags(p) for p in compiled} == {0b11}


@pytestmark_app
def test_the_app_runs_from_the_shipped_bytecode_without_writing_any(unpacked: tuple[Path, str, Target]) -> None:
    code, interpreter, _ = unpacked
    before = len(list(code.rglob("*.pyc")))
    # -v reports where each module's code object came from; -B: as on a read-only /code. wiring/ is what the
    # start-up thread imports after the port opened (app.py).
    result = subprocess.run([interpreter, "-v", "-B", "-E", "-s", "-S", "-c", "import app, wiring.agent_app"],
                            cwd=code,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    loaded = [line.split("code object from ", 1)[1].strip("'") for line in result.stderr.splitlines()
              if line.startswith("# code object from ")]
    from_zip = [where for where in loaded if where.startswith(str(code))]
    assert len(from_zip) > 500
    assert [where for where in from_zip if not where.endswith(".pyc")] == []
    assert len(list(code.rglob("*.pyc"))) == before


@pytestmark_app
def test_an_edited_source_file_wins_over_its_shipped_bytecode(unpacked: tuple[Path, str, Target],
                                                               tmp_path: Path) -> None:
    code, interpreter, _ = unpacked
    (tmp_path / "__pycache__").mkdir()
    for pyc in (code / "__pycache__").glob("outbound.*.pyc"):
        shutil.copy2(pyc, tmp_path / "__pycache__" / pyc.name)
    (tmp_path / "outbound.py").write_text((code / "outbound.py").read_text() + "\nEDITED_AFTER_PACKAGING = True\n")
    result = subprocess.run([interpreter, "-B", "-E", "-s", "-S", "-c",
                             "import sys; sys.path[:0] = ['.', *sys.argv[1:]]; import outbound; "
                             "print(outbound.EDITED_AFTER_PACKAGING)", str(code), str(code / "python")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert list((tmp_path / "__pycache__").glob("outbound.*.pyc"))  # the stale .pyc was there to be picked
    assert result.stdout.strip() == "True", result.stderr[-2000:]


# ---- the lock: every package in the zip pinned, pip check clean, nothing unused -----------------------------

# Declared by a pinned package but never imported, so left out (requirements-nodeps.in says why).
LEFT_OUT_ON_PURPOSE = {("agent-identity-python-sdk", "setuptools"), ("agent-identity-python-sdk", "utils")}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytestmark_app
def test_every_distribution_in_the_zip_is_pinned_in_the_lock_and_nothing_else(
        unpacked: tuple[Path, str, Target]) -> None:
    code, _, _ = unpacked
    shipped = {}
    for metadata in (code / "python").glob("*.dist-info/METADATA"):
        fields = dict(line.split(": ", 1) for line in metadata.read_text(errors="replace").splitlines()[:10]
                      if ": " in line)
        shipped[_normalised(fields["Name"])] = fields["Version"]
    locked = {name: str(pin.specifier) for name, pin in pinned(ROOT / "requirements.txt").items()}

    assert {name: f"=={version}" for name, version in shipped.items()} == locked


@pytestmark_app
def test_the_zip_is_pip_check_clean_but_for_what_is_left_out_on_purpose(unpacked: tuple[Path, str, Target],
                                                                         tmp_path: Path) -> None:
    code, interpreter, _ = unpacked
    # An empty venv of the runtime's Python: only the zip's python/ (PYTHONPATH) holds distributions.
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    venv_python = str(tmp_path / "venv" / "bin" / "python")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", venv_python, "check",
                             "--disable-pip-version-check"],
                            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(code / "python")},
                            capture_output=True, text=True, timeout=120)
    problems = result.stdout.strip().splitlines()
    missing = {(_normalised(m.group(1)), _normalised(m.group(2))) for line in problems
               if (m := re.fullmatch(r"(\S+) \S+ requires (\S+), which is not installed\.", line))}

    assert len(problems) == len(missing), result.stdout + result.stderr  # no conflicts, only absences
    assert missing == LEFT_OUT_ON_PURPOSE


# Imports every runtime module, then lists loaded modules that came from neither the zip nor the stdlib.
_IMPORT_EVERYTHING = """
import importlib, pkgutil, sys, sysconfig
sys.path.insert(0, '.')
import app
for package in ('agent', 'callback', 'identity', 'server', 'settings', 'tools', 'wiring'):
    for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + '.'):
        importlib.import_module(module.name)
import langchain_openai, langchain.agents, alibabacloud_agentidentitydata20251127.client, alibabacloud_sts20150401.client
import agent_identity_python_sdk.context
allowed = (sys.argv[1], sysconfig.get_paths()['stdlib'], sysconfig.get_paths()['platstdlib'])
for name, module in sorted(sys.modules.items()):
    where = getattr(module, '__file__', None)
    if where and not where.startswith(allowed):
        print(name, where)
"""


@pytestmark_app
def test_every_runtime_module_imports_from_the_zip_alone(unpacked: tuple[Path, str, Target]) -> None:
    code, interpreter, _ = unpacked
    result = subprocess.run([interpreter, "-E", "-s", "-S", "-c", _IMPORT_EVERYTHING, str(code)], cwd=code,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""  # no module was loaded from outside the zip and the standard library


def test_console_settings_name_the_runtime_command_port_and_variables(tmp_path: Path) -> None:
    package = BuiltPackage(path=tmp_path / "a.zip", size_bytes=30 * 2**20, file_count=1, target=Target("3.12"))
    text = console_settings(package)

    for expected in ("Python 3.12", "python3 app.py", "9000", "30.0 MiB", "AgentIdentityFullAccess",
                     "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME", "INBOUND_JWKS_URL", "IDENTITY_STATE_SECRET",
                     "DINGTALK_CREDENTIAL_PROVIDER_NAME", "APP_REDIRECT_URI", "MODEL_API_KEY",
                     "python3 app.py callback", "CALLBACK_OIDC_CLIENT_ID", "/callback/signed-in",
                     "agentrun:GetCredential", "step 4: the callback's address", "step 9: deploy the"):
        assert expected in text


@pytestmark_app
def test_app_starts_from_the_zip_alone_like_agentrun_runs_it(unpacked: tuple[Path, str, Target]) -> None:
    code, interpreter, _ = unpacked
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(code), "HOST": "127.0.0.1",
           "PORT": str(port), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
           "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": "zip-test", "IDENTITY_STATE_SECRET": "s" * 32,
           "DINGTALK_CREDENTIAL_PROVIDER_NAME": "dingtalk", "MODEL_API_KEY": "sk-test",
           "MODEL_BASE_URL": "http://127.0.0.1:9/v1"}
    # -E: ignore PYTHONPATH & co; -s/-S: no user or system site-packages. Only the zip can satisfy imports.
    server = subprocess.Popen([interpreter, "-E", "-s", "-S", "app.py"], cwd=code, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = _wait_for_health(f"http://127.0.0.1:{port}/health", server)
        assert body == b'{"status":"ok"}'
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "sk-test" not in output and "s" * 32 not in output


def _wait_for_health(url: str, server: subprocess.Popen[str]) -> bytes:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail("app.py exited from the unpacked zip:\n" + (server.stdout.read() if server.stdout else ""))
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as response:
                return response.read()
        except OSError:
            time.sleep(0.2)
    pytest.fail("app.py from the unpacked zip did not answer /health within 60 s")


@pytestmark_app
async def test_the_consent_journey_runs_from_the_zip_with_agent_and_callback_as_two_processes(
        unpacked: tuple[Path, str, Target]) -> None:
    """What a user meets on AgentRun: the agent (`python3 app.py`) and the callback (`python3 app.py callback`)
    both started from the unpacked zip alone; the streamed link is opened by a browser that only follows
    links, approves and signs in at the IdP; the same stream then writes the document."""
    code, interpreter, _ = unpacked
    with start_local_cloud() as cloud:
        callback_port, agent_port = free_port(), free_port()
        public = f"http://127.0.0.1:{callback_port}"
        cloud.register_return_url(f"{public}/callback")
        env = {**cloud.env, "APP_REDIRECT_URI": public, "HOME": str(code)}
        with app_process(env, "callback", port=callback_port, code_dir=code, python=interpreter, isolated=True), \
                app_process(env, port=agent_port, code_dir=code, python=interpreter, isolated=True) as agent:
            async def person(link: str) -> None:
                browser = LinkFollowingBrowser()
                assert page_title(await browser.approve_and_sign_in(link, "zip-user")) == "Authorization complete"
                await browser.aclose()

            reply = await stream_chat(agent, cloud.issue_user_jwt("zip-user"),
                                      DINGTALK_PROMPT.format(text="from the zip", doc="docZip1"), on_link=person)
        written = await document_content_at(cloud, "docZip1")
    assert "authorization_completed" in reply["types"] and written == "from the zip"


def test_an_older_python_runtime_is_named_in_one_line(tmp_path: Path) -> None:
    """AgentRun also offers python3.10: there the app must say which runtime to choose, not die on an import."""
    python310 = find_interpreter("3.10")
    if python310 is None:
        pytest.skip("no Python 3.10 on this machine")
    started = subprocess.run([python310, "-E", "-s", str(Path(__file__).parents[1] / "app.py")], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 1
    assert re.fullmatch(r"This agent needs Python 3\.11 or newer, not 3\.10\.\d+: choose the python3\.12 runtime "
                        r"for it in AgentRun\.\n", started.stderr)
