"""Compiles the zip's Python files to bytecode with the runtime's own Python, so no instance compiles at start.

AgentRun's `/code` may be read-only, and then every instance would compile the ~5,000 modules it imports
(1.6 s more CPU per start: bench/RESULTS.md, benchmark 9). The `.pyc` files are checked-hash ones (PEP 552):
the interpreter compares a hash of the source with the one in the `.pyc`, so an edited source file is never
run from stale bytecode, and unpacking (which resets modification times) cannot invalidate them. Bytecode is
specific to a Python minor version, hence the interpreter of the target version.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packager.wheels import PackagingError, Progress


def find_interpreter(version: str) -> str | None:
    """A working `python<version>` on this machine (pyenv installs count), or None."""
    candidates = [os.environ.get("PACKAGE_PYTHON", ""), shutil.which(f"python{version}") or "", sys.executable,
                  *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))),
                  f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in filter(None, candidates):
        try:
            found = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if found.returncode == 0 and found.stdout.strip() == version:
            return candidate
    return None


def compile_tree(folder: Path, version: str, progress: Progress) -> None:
    """Write a checked-hash `__pycache__/*.cpython-XY.pyc` next to every `.py` file under `folder`."""
    interpreter = find_interpreter(version)
    if interpreter is None:
        raise PackagingError(
            f"python{version} was not found: the zip ships bytecode compiled by the runtime's Python. Install "
            f"Python {version} (your OS packages, pyenv or `uv python install {version}`) or set PACKAGE_PYTHON "
            "to its path.")
    progress(f"  compiling bytecode with {interpreter} (checked-hash .pyc)")
    # -E -s: nothing from the environment or user site-packages changes what compileall does; `-s folder`
    # keeps the build folder's name out of the bytecode (the interpreter records the real path at import).
    result = subprocess.run([interpreter, "-E", "-s", "-m", "compileall", "-q", "-j", "0",
                             "--invalidation-mode", "checked-hash", "-s", str(folder), str(folder)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagingError(f"compiling bytecode failed:\n{(result.stdout + result.stderr)[-3000:]}")
