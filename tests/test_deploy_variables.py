"""The README's per-deployment list of the variables an operator sets, held against the code, both ways:
every listed variable is read by that deployment's settings, every variable production insists on is listed,
and the listed ones alone (plus what the cloud provides) start the deployment. The packager prints the same
lists, and `./scripts/rehearse` starts the zip with exactly them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from packager.deploy_settings import AGENT_VARIABLES, CALLBACK_VARIABLES
from sandbox.rehearse import deployment_env
from settings import CallbackSettings, ConfigError, Settings
from tools import TOOLS
from tools.tool import oauth2_providers

ROOT = Path(__file__).resolve().parent.parent
READMES = ("README.md", "README-CN.md")
LISTED = {"agent": set(AGENT_VARIABLES), "callback": set(CALLBACK_VARIABLES)}
READERS = {"agent": lambda env: Settings.from_env(env, oauth2_providers(TOOLS)),
           "callback": CallbackSettings.from_env}
# A table row: | Agent | `python3 app.py` | `A`, `B` |  (the start command tells the deployment)
ROW = re.compile(r"^\|[^|\n]+\| `python3 app\.py( callback)?` \|([^\n]+)\|$", re.M)
VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name the settings code looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)


def readme_table(name: str) -> dict[str, set[str]]:
    rows = {("callback" if callback else "agent"): set(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells))
            for callback, cells in ROW.findall((ROOT / name).read_text())}
    assert set(rows) == {"agent", "callback"}, f"{name}: the deploy section's variable table is missing"
    return rows


def production_env(cloud: Any, names: set[str]) -> dict[str, str]:
    """The named variables with the emulated cloud's values, plus what the cloud provides on AgentRun (the
    rehearsal's own environment)."""
    return deployment_env(cloud, tuple(names), "https://callback.example.com/invocations")


@pytest.fixture(params=sorted(LISTED))
def deployment(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.mark.parametrize("readme", READMES)
def test_the_readmes_list_what_the_packager_prints(readme: str) -> None:
    assert readme_table(readme) == LISTED


def test_every_listed_variable_is_read_by_its_deployment(cloud: Any, deployment: str) -> None:
    env = RecordingEnv(production_env(cloud, LISTED[deployment]))
    READERS[deployment](env)

    assert LISTED[deployment] <= env.read


def test_the_listed_variables_alone_start_the_deployment_in_production(cloud: Any, deployment: str) -> None:
    READERS[deployment](production_env(cloud, LISTED[deployment]))  # no ConfigError


def test_every_variable_production_insists_on_is_listed(deployment: str) -> None:
    """With nothing set on Function Compute, each problem must be one a listed variable fixes."""
    with pytest.raises(ConfigError) as missing:
        READERS[deployment]({"FC_REGION": "cn-hangzhou"})

    for problem in missing.value.problems:
        assert set(VARIABLE.findall(problem)) & LISTED[deployment], problem
