"""The environment variables the runtime code reads, and those `.env.example` lists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from settings.tools import ProviderSettings
from tools import TOOLS
from tools.tool import oauth2_providers

ROOT = Path(__file__).resolve().parent.parent.parent
RUNTIME_PACKAGES = ("agent", "callback", "identity", "settings", "tools", "server")
RUNTIME_SOURCES = [*ROOT.glob("*.py"),
                   *[path for package in RUNTIME_PACKAGES for path in (ROOT / package).glob("*.py")]]
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
READ_METHODS = {"str", "first", "int", "float", "bool", "list", "get", "getenv", "choice", "url", "endpoint",
                "origins", "region", "missing"}


def variables_read_by_the_code() -> set[str]:
    """Every NAME in `reader.str("NAME")`, `read.first("A", "B")`, `env.get("NAME")` and the like, and the
    variables of every OAuth2 provider a tool of `tools.TOOLS` uses (named after its prefix)."""
    names = {name for provider in oauth2_providers(TOOLS) for name in ProviderSettings.variables(provider)}
    for path in RUNTIME_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in READ_METHODS:
                names.update(arg.value for arg in node.args
                             if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and ENV_NAME.match(arg.value))
    return names


def variables_in_env_example() -> set[str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return {match.group(1) for match in re.finditer(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)}
