"""Which files of the repository go into the zip: the runtime code only, never tests, tools or secrets.

The rule is an allow-list by shape (top-level `*.py` files and top-level Python packages) minus the
development-only packages, so a new runtime package is picked up without editing this file, while anything
that looks like a secret or a cache is always left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

# Top-level packages that exist for development only and must never ship.
DEV_ONLY_PACKAGES = frozenset({"tests", "emulators", "bench", "sandbox", "packager", "scripts", "web", "python"})

# Extra top-level files the runtime reads or a deployer wants to see.
EXTRA_FILES = ("requirements.txt",)

# Never packaged, wherever they appear: caches, VCS data, local configuration and key material.
EXCLUDED_DIR_NAMES = frozenset({"__pycache__", ".git", ".venv", ".pytest_cache", ".ruff_cache", ".mypy_cache",
                                "node_modules", "dist", "build"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".pem", ".key", ".p12", ".pfx", ".crt", ".zip", ".log")
EXCLUDED_NAMES = frozenset({".env", ".config.json", "credentials", "config.json", ".DS_Store"})


def is_excluded(path: Path) -> bool:
    """True for caches, VCS data, `.env*` files (except the committed example) and key material."""
    if any(part in EXCLUDED_DIR_NAMES for part in path.parts):
        return True
    name = path.name
    if name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES):
        return True
    return name.startswith(".env")


def app_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Yield (source path, name inside the zip) for every runtime file of the repository at `root`."""
    for path in sorted(root.glob("*.py")):
        if not is_excluded(path):
            yield path, path.name
    for name in EXTRA_FILES:
        if (root / name).is_file():
            yield root / name, name
    for package in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        if package.name in DEV_ONLY_PACKAGES or package.name.startswith("."):
            continue
        for path in sorted(package.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not is_excluded(relative):
                yield path, relative.as_posix()
