"""The READMEs as a reader uses them: every command, link, anchor, image and variable they name exists, and
README-CN.md says the same as README.md (the same sections, tables, commands and variables)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ag_ui.core import EventType

from tests.support.variables import variables_in_env_example, variables_read_by_the_code

ROOT = Path(__file__).resolve().parent.parent
READMES = {"en": ROOT / "README.md", "cn": ROOT / "README-CN.md"}
# Variables the platform or the tests set, named in the docs without being read through the settings.
NOT_SETTINGS = {"SMOKE_USER_JWT", "PACKAGE_PYTHON", "CHAT_PAGE_SCREENSHOTS", "BASE", "USER_JWT", "PYTHONPATH",
                "CHROMIUM_PATH", "FC_ACCOUNT_ID", "FC_INSTANCE_ID", "USER_FEDERATION",
                "SSL_CERT_FILE",  # read by the TLS libraries from the process environment, not by settings
                "SANDBOX_NAME",  # the original sample's code interpreter (Coming from agent-identity-python-sdk)
                # the example tool of "Add a tool that acts as the user" (Develop)
                "GITHUB_CREDENTIAL_PROVIDER_NAME", "GITHUB_API_BASE", "GITHUB_SCOPES",
                # AG-UI's event names (The AG-UI endpoint)
                *(event.value for event in EventType)}


def text(name: str) -> str:
    return READMES[name].read_text(encoding="utf-8")


def without_code(markdown: str) -> str:
    return re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)


def headings(markdown: str) -> list[str]:
    return re.findall(r"^(#{2,4}) ", without_code(markdown), flags=re.MULTILINE)


def table_shapes(markdown: str) -> list[tuple[int, int]]:
    """(rows, columns) of each table."""
    shapes, rows = [], []
    for line in without_code(markdown).splitlines() + [""]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            shapes.append((len(rows), rows[0].count("|")))
            rows = []
    return shapes


def commands(markdown: str) -> list[str]:
    return re.findall(r"(?:\./scripts/[\w-]+|python3? -m [\w.]+|python3? app\.py(?: callback)?)", markdown)


def variables(markdown: str) -> set[str]:
    names = set(re.findall(r"`\$?\{?([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b\}?(?!_\*)", markdown))
    return {name for name in names if not name.startswith("_")}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("name", READMES)
def test_every_script_and_module_named_exists(name: str) -> None:
    for command in set(commands(text(name))):
        if command.startswith("./scripts/"):
            script = ROOT / command[2:]
            assert script.is_file() and script.stat().st_mode & 0o111, command
        elif " -m " in command:
            module = command.split(" -m ")[1].replace(".", "/")
            assert (ROOT / f"{module}.py").is_file() or (ROOT / module / "__main__.py").is_file(), command


@pytest.mark.parametrize("name", READMES)
def test_every_link_anchor_and_image_resolves(name: str) -> None:
    markdown = text(name)
    anchors = {slug(h) for h in re.findall(r"^#{1,4} (.+)$", without_code(markdown), flags=re.MULTILINE)}
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code(markdown)):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (ROOT / path).exists(), target
        if anchor and not path:
            assert anchor in anchors, f"{target} (anchors: {sorted(anchors)})"


def test_every_image_is_shown() -> None:
    shown = " ".join(text(name) for name in READMES)
    for image in (ROOT / "images").iterdir():
        if image.suffix in (".png", ".svg"):
            assert f"images/{image.name}" in shown, f"{image.name} is not referenced by a README"


@pytest.mark.parametrize("name", READMES)
def test_every_variable_named_is_documented_and_read(name: str) -> None:
    named = variables(text(name)) - NOT_SETTINGS
    in_example, read = variables_in_env_example(), variables_read_by_the_code()
    assert named - in_example == set(), "named in the README but missing from .env.example"
    assert named - read == set(), "named in the README but read by no settings code"


def test_the_chinese_readme_says_the_same_as_the_english_one() -> None:
    en, cn = text("en"), text("cn")
    assert headings(cn) == headings(en)
    assert table_shapes(cn) == table_shapes(en)
    assert sorted(commands(cn)) == sorted(commands(en))
    assert variables(cn) == variables(en)
    assert len(re.findall(r"```", cn)) == len(re.findall(r"```", en))


# The consoles' own words (Agent Identity, AgentRun, RAM), as a first-time user sees them on screen; both READMEs
# quote them so that either reader finds the field.
CONSOLE_TERMS = ("入站 → 身份提供商", "元数据地址", "允许的目标受众", "出站 → 凭证提供商", "模型管理 → 大语言模型",
                 "通过代码创建", "匿名访问", "执行角色", "集成管理 → OAuth 应用", "其他 → 凭证管理")


@pytest.mark.parametrize("name", READMES)
def test_the_deploy_steps_use_the_consoles_words_and_grant_what_the_code_calls(name: str) -> None:
    markdown = text(name)
    for term in CONSOLE_TERMS:
        assert term in markdown, term
    # A model service's key is a stored credential by default: the role must be allowed to read it.
    assert "`agentrun:GetCredential`" in markdown and "`agentrun:GetModelService`" in markdown
    # The CLI creates its resources in AGENT_IDENTITY_REGION_ID (default cn-beijing), with the two options
    # that associate the identity provider and register the callback (agent-identity-cli's own names).
    cli = markdown[markdown.index("pip install agent-identity-cli"):]
    cli = cli[:cli.index("```")]
    assert "export AGENT_IDENTITY_REGION_ID=" in cli
    assert "--identity-provider-name" in cli and "--allowed-resource-oauth2-return-urls" in cli
    assert "./scripts/get-jwt --issuer" in markdown and "--agent-url" in markdown
    assert "https://help.aliyun.com/document_detail/93698.html" in markdown  # ID tokens (通过OIDC获取用户信息)


def test_the_chinese_readme_names_each_console_resource_one_way() -> None:
    cn = text("cn")
    for word in ("身份提供方", "凭据提供方", "凭证提供方", "凭据提供商"):
        assert word not in cn, word


@pytest.mark.parametrize("name", ["en", "cn"])
def test_the_add_a_tool_example_is_the_real_module_listed_in_tools(name: str) -> None:
    """The README shows `tools/dingtalk_profile.py` whole, and it is one line of `TOOLS`."""
    from tools import TOOLS
    from tools.dingtalk_profile import read_dingtalk_profile

    module = (ROOT / "tools" / "dingtalk_profile.py").read_text(encoding="utf-8")
    assert f"```python\n{module}```" in text(name)
    assert read_dingtalk_profile in TOOLS
