"""The exact settings a person enters in the AgentRun console for the zip we built."""

from __future__ import annotations

from packager.build import BuiltPackage
from tools import TOOLS
from tools.tool import oauth2_providers

# (variable, what to put there). Values are placeholders: real secrets are typed into the console, never here.
REQUIRED_VARIABLES = (
    ("AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME", "the workload identity you created for this agent"),
    ("AGENT_IDENTITY_REGION_ID", "the region of your Agent Identity resources, e.g. cn-beijing"),
    ("IDENTITY_STATE_SECRET", 'a random secret: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'),
    ("APP_REDIRECT_URI", "the callback deployment's public https URL; register <it>/callback as a return URL"),
    ("INBOUND_JWKS_URL", "your identity provider's jwks_uri"),
    ("INBOUND_JWT_ISSUER", "the iss of your users' JWTs"),
    ("INBOUND_JWT_AUDIENCE", "the aud of your users' JWTs"),
    *((f"{provider.env_prefix}_CREDENTIAL_PROVIDER_NAME", f"the {provider.label} OAuth2 credential provider in "
       "Agent Identity") for provider in oauth2_providers(TOOLS)),
    ("MODEL_API_KEY", "your DashScope API key (or set MODEL_SERVICE_NAME to use an AgentRun model service)"),
    ("CALLBACK_OIDC_CLIENT_ID", "the OAuth client of your IdP that the callback signs browsers in with"),
    ("CALLBACK_OIDC_CLIENT_SECRET", "its secret; register <APP_REDIRECT_URI>/callback/signed-in as its redirect URI"),
)
# The callback deployment (`python3 app.py callback`) needs only these; with the same values as the agent's.
CALLBACK_VARIABLES = ("IDENTITY_STATE_SECRET", "APP_REDIRECT_URI", "AGENT_IDENTITY_REGION_ID", "INBOUND_JWKS_URL",
                      "INBOUND_JWT_ISSUER", "CALLBACK_OIDC_CLIENT_ID", "CALLBACK_OIDC_CLIENT_SECRET")
OPTIONAL_VARIABLES = ("MODEL_NAME (qwen-plus)", "MODEL_BASE_URL",
                      *(f"{provider.env_prefix}_SCOPES ({' '.join(scopes)})"
                        for provider, scopes in oauth2_providers(TOOLS).items()),
                      "AUTHORIZATION_TIMEOUT_SECONDS (300)", "LOG_LEVEL (INFO)")


def console_settings(package: BuiltPackage) -> str:
    """A block of text to copy into the AgentRun console, field by field."""
    width = max(len(name) for name, _ in REQUIRED_VARIABLES)
    variables = "\n".join(f"    {name.ljust(width)}  = <{hint}>" for name, hint in REQUIRED_VARIABLES)
    return f"""
AgentRun console settings (Agent runtime -> create -> code package):
  Code package       : upload {package.path} ({package.size_bytes / 2**20:.1f} MiB)
  Runtime            : Python {package.target.python_version} (python{package.target.python_version})
  Start command      : python3 app.py
  Listening port     : 9000
  Instance role      : a RAM role with AgentIdentityFullAccess (do NOT set ALIBABA_CLOUD_ACCESS_KEY_* yourself)
  Environment variables:
{variables}
  Optional: {", ".join(OPTIONAL_VARIABLES)}
  Not needed: PYTHONPATH (app.py adds /code/python itself), PORT (9000 is the default).

The authorization callback: a second agent runtime from the same zip, reachable by browsers (no inbound
credential), the same runtime, role and port, start command: python3 app.py callback
  Environment variables (the agent's values): {", ".join(CALLBACK_VARIABLES)}
See README.md, sections "Prepare Agent Identity" (step 4: Callback) and "Package and deploy to AgentRun".""".strip("\n")
