"""Every command the READMEs give is run by some test: a command no test runs is a journey that breaks unseen
(`./scripts/sandbox` once died on a fresh clone while every test passed). The table below names, for each
command, the test that runs it; a new command in a README without a test here fails, and so does a stale row.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = ("README.md", "README-CN.md")
# A script of ours, `python -m <module>` (also from .venv/bin), or the entry point with its one argument.
COMMAND = re.compile(r"(\./scripts/[a-z-]+|python3? -m [a-z_.]+|python3? app\.py(?: callback)?)")

RUN_BY = {
    "./scripts/sandbox": "tests/test_journeys.py::test_a_newcomer_runs_the_sandbox_from_a_fresh_clone_and_the_"
                         "printed_curl_writes_the_document",
    "./scripts/test": "tests/test_readme_commands.py::test_ci_runs_the_readme_test_command",
    "./scripts/package": "tests/test_journeys.py::test_the_operator_rehearses_the_deployment_from_the_zip",
    "./scripts/rehearse": "tests/test_journeys.py::test_the_operator_rehearses_the_deployment_from_the_zip",
    "./scripts/smoke-cloud": "tests/test_journeys.py::test_smoke_cloud_without_a_cloud_account_says_what_is_"
                             "missing",
    "./scripts/lock": "tests/test_journeys.py::test_the_lock_script_reproduces_the_lock_on_a_fresh_clone",
    "./scripts/diagrams": "tests/test_journeys.py::test_the_diagrams_script_renders_the_committed_images",
    "./scripts/get-jwt": "tests/test_get_jwt.py::test_a_user_signs_in_at_the_emulated_idp_and_gets_a_jwt_the_agent_"
                         "accepts",
    "python -m emulators": "tests/test_emulators_cli.py::test_cli_help_names_every_option",
    "python -m bench.run_all": "tests/test_journeys.py::test_the_benchmarks_run_as_the_readme_gives_them",
    "python -m bench.vs_naive": "tests/test_journeys.py::test_the_benchmarks_run_as_the_readme_gives_them",
    "python app.py": "tests/test_package.py::test_the_consent_journey_runs_from_the_zip_with_agent_and_"
                     "callback_as_two_processes",
    "python app.py callback": "tests/test_package.py::test_the_consent_journey_runs_from_the_zip_with_agent_"
                              "and_callback_as_two_processes",
}


def readme_commands(name: str) -> set[str]:
    """The commands `name` gives in its code: fenced blocks and inline code spans."""
    text = (ROOT / name).read_text()
    code = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    found = {match for snippet in code for match in COMMAND.findall(snippet)}
    return {re.sub(r"^python3 ", "python ", command) for command in found}  # the runtime's spelling


def test_both_readmes_give_the_same_commands() -> None:
    assert readme_commands("README.md") == readme_commands("README-CN.md")


@pytest.mark.parametrize("readme", READMES)
def test_every_readme_command_is_run_by_a_test(readme: str) -> None:
    untested = readme_commands(readme) - set(RUN_BY)
    assert not untested, f"{readme} gives commands no test runs: {sorted(untested)}; add a test and a row here"


def test_every_test_named_here_exists_and_its_command_is_still_given() -> None:
    given = readme_commands("README.md")
    for command, node in RUN_BY.items():
        assert command in given, f"{command} is no longer in README.md: drop its row"
        path, name = node.split("::")
        tree = ast.parse((ROOT / path).read_text())
        defined = {item.name for item in ast.walk(tree) if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert name in defined, f"{node} (for {command}) does not exist"


def test_ci_runs_the_readme_test_command() -> None:
    """CI is `bash .ci/run` on a clean clone: it must be exactly the README's test command, which is the
    pytest run this test is part of."""
    steps = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert steps[-1] == "./scripts/test"
    fenced = re.search(r"## Run the tests\n\n```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert fenced and fenced.group(1) == "./scripts/test"
