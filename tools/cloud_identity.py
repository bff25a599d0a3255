"""Which Alibaba Cloud identity the agent acts as, asked of STS with the agent's own credentials."""

from __future__ import annotations

from alibabacloud_sts20150401.client import Client as StsClient

from outbound import sdk_call
from tools.tool import CloudSession, Sts, tool


@tool(Sts(["sts:GetCallerIdentity"]))
async def get_alibaba_cloud_caller_identity(cloud: CloudSession) -> str:
    """Tell which Alibaba Cloud identity this agent acts as: the account ID, the RAM role ARN and the
    identity type. Use this when the user asks who the agent is on Alibaba Cloud, which account or role it
    uses, or to check that its cloud credentials work."""
    sts = cloud.client(StsClient, cloud.settings.sts_endpoint)
    body = (await sdk_call(sts.get_caller_identity)).body
    return (f"The agent acts as Alibaba Cloud account {body.account_id}, with ARN {body.arn} "
            f"(identity type: {body.identity_type}; principal: {body.principal_id}).")
