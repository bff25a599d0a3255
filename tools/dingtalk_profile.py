"""Who the signed-in user is on DingTalk, read with their own DingTalk authorization."""

from __future__ import annotations

from tools.dingtalk import DINGTALK, SCOPES, dingtalk_failure
from tools.tool import OAuth2, UserSession, tool


@tool(OAuth2(DINGTALK, SCOPES, purpose="Read your DingTalk profile"))
async def read_dingtalk_profile(user: UserSession) -> str:
    """Tell the signed-in user's DingTalk name and account ids. Use this when the user asks who they are on
    DingTalk or which DingTalk account the agent acts for."""
    response = await user.http.get("/v1.0/contact/users/me",
                                   headers={"x-acs-dingtalk-access-token": user.access_token})
    if not response.is_success:
        raise dingtalk_failure(response, user.access_token, consequence="the profile was not read")
    profile = response.json()
    return (f"On DingTalk you are {profile.get('nick') or 'a user without a name'} "
            f"(unionId {profile.get('unionId')}, openId {profile.get('openId')}).")
