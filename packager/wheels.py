"""Installs the pinned runtime dependencies as Linux x86_64 wheels for the AgentRun Python, and checks them.

pip is told the target (`--platform`, `--python-version`, `--only-binary=:all:`), so it never builds or picks a
wheel for the machine running the build, and `--no-deps`: requirements.txt is a complete lock, so the zip holds
exactly its pins (scripts/lock leaves out what a pinned package declares but nothing imports, see
requirements-nodeps.in). A pinned package that publishes only an sdist is pure Python, so a wheel built here is
valid everywhere (`py3-none-any`), and we check that it really is before using it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging import tags
from packaging.requirements import Requirement

# Pinned packages that publish no wheel at all (checked on PyPI for the pinned versions). All are pure Python.
SDIST_ONLY = frozenset({"alibabacloud-tea"})

DEFAULT_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_x86_64$")
_LEGACY_MANYLINUX = {"manylinux1_x86_64": 5, "manylinux2010_x86_64": 12, "manylinux2014_x86_64": 17}

Progress = Callable[[str], None]


class PackagingError(Exception):
    """The package cannot be built as asked; the message says what to change."""


@dataclass(frozen=True)
class Target:
    """The interpreter and platform of the AgentRun runtime the zip is built for."""

    python_version: str = "3.12"
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.python_version.split(".")[:2]
        return int(major), int(minor)

    @property
    def max_glibc_minor(self) -> int:
        """The newest glibc (2.x) any requested platform allows."""
        return max(_glibc_minor(p) for p in self.platforms)

    def supported_tags(self) -> frozenset[tags.Tag]:
        """Every wheel tag an interpreter of this target would install."""
        platforms = [f"manylinux_2_{m}_x86_64" for m in range(self.max_glibc_minor, 4, -1)]
        platforms += [name for name, m in _LEGACY_MANYLINUX.items() if m <= self.max_glibc_minor]
        interpreter = "cp%d%d" % self.version_tuple
        return frozenset(tags.cpython_tags(self.version_tuple, platforms=platforms)) | frozenset(
            tags.compatible_tags(self.version_tuple, interpreter=interpreter, platforms=platforms))


def _glibc_minor(platform: str) -> int:
    if platform in _LEGACY_MANYLINUX:
        return _LEGACY_MANYLINUX[platform]
    match = _MANYLINUX.match(platform)
    if not match or match.group(1) != "2":
        raise PackagingError(f"unsupported platform {platform!r}: use manylinux2014_x86_64 or manylinux_2_NN_x86_64")
    return int(match.group(2))


def validate(target: Target) -> None:
    """Reject targets our pinned dependencies cannot run on, with the reason."""
    if not re.fullmatch(r"3\.\d+", target.python_version):
        raise PackagingError(f"--python-version must look like 3.12, got {target.python_version!r}")
    if target.version_tuple < (3, 11):
        raise PackagingError(
            f"Python {target.python_version} cannot run this agent: langchain 1.x and LangGraph's stream writer "
            "need Python >= 3.11. Choose the AgentRun runtime python3.12 and build with --python-version 3.12.")
    for platform in target.platforms:
        _glibc_minor(platform)


def pinned(requirements: Path) -> dict[str, Requirement]:
    """The requirements file's pins by normalised name."""
    result: dict[str, Requirement] = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            result[_normalise(requirement.name)] = requirement
    return result


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _run_pip(args: list[str], progress: Progress) -> None:
    """Run pip with this interpreter, relaying its progress lines and failing with its last error lines."""
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--progress-bar", "off"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if not line or line.startswith("WARNING: Location"):
            continue  # pip's complaint about configured local indexes that do not exist
        tail = (tail + [line])[-15:]
        if line.startswith(("Collecting", "Building wheel", "ERROR")):
            progress("    " + line.split(" (from ", 1)[0])
        elif line.startswith("Successfully installed"):
            progress(f"    installed {len(line.split()) - 2} distributions")
    if process.wait() != 0:
        raise PackagingError("pip failed:\n" + "\n".join(tail))


def build_sdist_only_wheels(pins: dict[str, Requirement], wheelhouse: Path, progress: Progress) -> None:
    """Build wheels for the pinned sdist-only packages, and refuse any that is not pure Python."""
    wanted = [str(pins[name]) for name in sorted(SDIST_ONLY) if name in pins]
    if not wanted:
        return
    progress(f"  building pure-Python wheels for sdist-only packages: {', '.join(wanted)}")
    _run_pip(["wheel", "--no-deps", "--no-binary=:all:", "--wheel-dir", str(wheelhouse), *wanted], progress)
    for wheel in wheelhouse.glob("*.whl"):
        if not wheel.name.endswith("-none-any.whl"):
            raise PackagingError(f"{wheel.name} is not pure Python; it needs a wheel built for the target")


def install(requirements: Path, destination: Path, wheelhouse: Path, target: Target, progress: Progress) -> None:
    """Install the pinned requirements for `target` into `destination` (the zip's `python/`)."""
    build_sdist_only_wheels(pinned(requirements), wheelhouse, progress)
    progress(f"  installing {requirements.name} for CPython {target.python_version} on "
             f"{', '.join(target.platforms)}")
    platform_args = [arg for platform in target.platforms for arg in ("--platform", platform)]
    _run_pip(["install", "--target", str(destination), "--no-compile", "--no-deps", "--only-binary=:all:",
              "--implementation", "cp", "--python-version", target.python_version, *platform_args,
              "--find-links", str(wheelhouse), "--upgrade", "-r", str(requirements)], progress)


def wheel_tags(python_dir: Path) -> dict[str, list[tags.Tag]]:
    """The tags each installed distribution declares in its `*.dist-info/WHEEL`, by distribution folder."""
    found: dict[str, list[tags.Tag]] = {}
    for wheel_file in sorted(python_dir.glob("*.dist-info/WHEEL")):
        declared = [tag for line in wheel_file.read_text().splitlines() if line.startswith("Tag:")
                    for tag in tags.parse_tag(line.split(":", 1)[1].strip())]
        found[wheel_file.parent.name] = declared
    return found


def tag_mismatches(python_dir: Path, target: Target) -> list[str]:
    """Distributions in `python_dir` that no tag of `target` accepts (empty when all fit)."""
    supported = target.supported_tags()
    return [f"{dist}: {', '.join(map(str, declared)) or 'no Tag lines'}"
            for dist, declared in wheel_tags(python_dir).items() if not supported.intersection(declared)]


def prune(python_dir: Path) -> None:
    """Remove what the runtime never uses: console scripts made for this machine and byte-code caches."""
    for path in [python_dir / "bin", *python_dir.rglob("__pycache__")]:
        if path.exists():
            shutil.rmtree(path)
