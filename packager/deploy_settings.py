"""The exact settings a person enters in the AgentRun console for the zip we built. The variables come from
the settings themselves (`settings.console_variables`): every one required in production, and every one the
settings mark as worth setting, each with its hint."""

from __future__ import annotations

from packager.build import BuiltPackage
from settings import console_variables
from tools import TOOLS
from tools.tool import oauth2_providers

# What the operator sets on each deployment (README, "Package and deploy to AgentRun", holds the same table).
AGENT_VARIABLES = tuple(console_variables(oauth2_providers(TOOLS)))
CALLBACK_VARIABLES = tuple(console_variables((), callback=True))


def console_settings(package: BuiltPackage) -> str:
    """A block of text to copy into the AgentRun console, field by field. Values are placeholders: real
    secrets are typed into the console, never here."""
    agent = console_variables(oauth2_providers(TOOLS))
    width = max(len(name) for name in agent)
    variables = "\n".join(f"    {name.ljust(width)}  = <{hint}>" for name, hint in agent.items())
    return f"""
AgentRun console settings (Agent runtime -> create -> code package):
  Code package       : upload {package.path} ({package.size_bytes / 2**20:.1f} MiB)
  Runtime            : Python {package.target.python_version} (python{package.target.python_version})
  Start command      : python3 app.py
  Listening port     : 9000
  Execution role     : a RAM role with AgentIdentityFullAccess, plus agentrun:GetModelService and
                       agentrun:GetCredential for MODEL_SERVICE_NAME
                       (do NOT set ALIBABA_CLOUD_ACCESS_KEY_* yourself)
  Environment variables:
{variables}
  Optional: every other variable of .env.example (README, "Configuration"), e.g. MODEL_NAME (qwen-plus).
  Not needed: PYTHONPATH (app.py adds /code/python itself), PORT (9000 is the default).

The authorization callback: a second agent runtime from the same zip, reachable by browsers (anonymous access,
no inbound credential), the same runtime, role and port, start command: python3 app.py callback
  Environment variables (the agent's values): {", ".join(CALLBACK_VARIABLES)}
See README.md, section "Prepare Agent Identity" (step 4: the callback's address; step 9: deploy the
callback and the agent), and "Package and deploy to AgentRun".""".strip("\n")
