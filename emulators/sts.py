"""STS (2015-04-01) emulator: GetCallerIdentity for the static AccessKey and for issued STS credentials.

Wire format (docs/services.md, STS): RPC `POST /`, ACS3-signed like every ACS call. The STS credentials it accepts are
the ones Agent Identity's AssumeRoleForWorkloadIdentity issued (the shared `sts_credentials` registry);
unknown or expired ones get the real error codes from `SignatureVerifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulators._server import Faults, emulator_app
from emulators.acs import AcsError, Principal, SignatureVerifier, render_acs_error, rpc_endpoint
from emulators.registry import CredentialRegistry


@dataclass(frozen=True)
class RamUser:
    """The RAM user that owns the static AccessKey (what GetCallerIdentity says for it)."""

    account_id: str
    user_name: str
    user_id: str


class StsEmulator:
    """`.app` answers GetCallerIdentity; the caller's identity comes from the verified signature."""

    def __init__(self, *, verifier: SignatureVerifier, owner: RamUser, sts_credentials: CredentialRegistry,
                 faults: Faults | None = None) -> None:
        self.owner = owner
        self._sts = sts_credentials
        endpoint = rpc_endpoint(verifier, {"GetCallerIdentity": self._get_caller_identity})
        self.app = emulator_app("sts", [endpoint], render_acs_error,
                                on_expire_tokens=sts_credentials.expire_all, faults=faults)

    async def _get_caller_identity(self, _: dict[str, str], principal: Principal | None) -> dict[str, Any]:
        if principal is None:  # unreachable: the action is signed; kept so a wiring mistake cannot leak
            raise AcsError(400, "MissingAuthorization", "The request is not signed.")
        if principal.sts is not None:
            details = principal.sts.details
            return {"AccountId": details["account_id"], "Arn": details["assumed_role_arn"],
                    "IdentityType": "AssumedRoleUser", "PrincipalId": details["principal_id"],
                    "RoleId": details["role_id"]}
        owner = self.owner
        return {"AccountId": owner.account_id, "Arn": f"acs:ram::{owner.account_id}:user/{owner.user_name}",
                "IdentityType": "RAMUser", "PrincipalId": owner.user_id, "UserId": owner.user_id}
