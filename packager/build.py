"""Assembles the AgentRun zip: runtime code at the root, dependencies in `python/`, nothing else.

AgentRun unpacks the zip into `/code` and runs the start command there; `/code/python` is not on the path
by default, which is why `app.py` adds its own `python/` folder to `sys.path` before importing anything.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packager.bytecode import compile_tree
from packager.contents import app_files
from packager.wheels import PackagingError, Progress, Target, install, prune, tag_mismatches, validate

DEPENDENCY_DIR = "python"
ENTRY_FILE = "app.py"


@dataclass(frozen=True)
class BuiltPackage:
    path: Path
    size_bytes: int
    file_count: int
    target: Target


def build(root: Path, output: Path, target: Target, progress: Progress = print) -> BuiltPackage:
    """Build the zip for `target` from the repository at `root` into `output`."""
    validate(target)
    if not (root / ENTRY_FILE).is_file():
        raise PackagingError(f"{root / ENTRY_FILE} is missing: the zip needs its entry file at the root")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentrun-package-") as scratch:
        code = Path(scratch) / "code"  # the zip's contents, as AgentRun unpacks them into /code
        python_dir = code / DEPENDENCY_DIR
        wheelhouse = Path(scratch) / "wheelhouse"
        wheelhouse.mkdir()
        progress(f"[1/3] Installing runtime dependencies into {DEPENDENCY_DIR}/")
        install(root / "requirements.txt", python_dir, wheelhouse, target, progress)
        prune(python_dir)
        mismatches = tag_mismatches(python_dir, target)
        if mismatches:
            raise PackagingError("wheels that do not fit the target:\n  " + "\n  ".join(mismatches))
        for source, name in app_files(root):
            (code / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, code / name)
        compile_tree(code, target.python_version, progress)
        progress("[2/3] Writing " + str(output))
        count = _write_zip(code, output)
    size = output.stat().st_size
    progress(f"[3/3] Done in {time.monotonic() - started:.0f} s: {count} files, {size / 2**20:.1f} MiB")
    return BuiltPackage(path=output, size_bytes=size, file_count=count, target=target)


def _write_zip(code: Path, output: Path) -> int:
    """Write the staged folder `code` into a new zip (atomically replacing `output`); returns the file count."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    count = 0
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for source in sorted(code.rglob("*")):
            if source.is_file():
                archive.write(source, source.relative_to(code).as_posix())
                count += 1
    os.replace(partial, output)
    return count
