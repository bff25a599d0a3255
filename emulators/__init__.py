"""Local stand-ins for Agent Identity, STS, AgentRun, DingTalk, an OIDC IdP and an OpenAI-compatible model.

`start_local_cloud()` starts them all in-process; `python -m emulators --ready-file PATH` does the same in
its own process. See docs/architecture.md for the contract.
"""

from emulators.cloud import EMULATORS, ExternalIdp, LocalCloud, start_local_cloud

__all__ = ["EMULATORS", "ExternalIdp", "LocalCloud", "start_local_cloud"]
