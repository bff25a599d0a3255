"""Users whose sign-in token is too large for Agent Identity's CustomState: the flow's sealed state carries
the user's JWT (~1.34 x its length), so a JWT over ~2.9 KB cannot make the round trip. It is refused before
any link is asked for, with its own code and a sentence that names the cause and the limit; a lower real
limit, which shows as the service's own refusal of CustomState, gets the same answer. Over the real HTTPS
emulators.
"""

from __future__ import annotations

import pytest

from identity.errors import AuthorizationPending, UserTokenTooLarge
from tests.support.identity import PURPOSE, SCOPES, calls, identity_for, signed_in, sized_user_jwt, unique


async def ask_for_a_dingtalk_token(cloud, jwt: str) -> str:
    identity = identity_for(cloud)
    try:
        async with signed_in(identity, jwt) as events:
            try:
                return await identity.oauth2_token(provider=cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"],
                                                   scopes=SCOPES, purpose=PURPOSE)
            finally:
                assert not events  # no link was shown
    finally:
        await identity.aclose()


async def test_a_jwt_too_large_for_the_state_is_refused_before_any_link(fresh_cloud) -> None:
    jwt = sized_user_jwt(fresh_cloud, unique("big"), 6000)
    with pytest.raises(UserTokenTooLarge) as refused:
        await ask_for_a_dingtalk_token(fresh_cloud, jwt)
    error = refused.value
    assert error.code == "user_token_too_large" and error.http_status == 400
    assert "sign-in token is too large" in error.safe_message and "4,096" in error.safe_message
    assert jwt not in str(error) and (await calls(fresh_cloud)).get("GetResourceOAuth2Token", 0) == 0


async def test_the_services_own_customstate_refusal_is_the_same_answer(fresh_cloud, monkeypatch) -> None:
    """A real limit lower than the documented one: the emulated service refuses 3,000 characters
    (InvalidParameter.CustomState), and a 2,600-character JWT (a ~3,700-character state) gets the same
    error."""
    monkeypatch.setattr("emulators.agent_identity.MAX_CUSTOM_STATE", 3000)
    jwt = sized_user_jwt(fresh_cloud, unique("big"), 2600)
    with pytest.raises(UserTokenTooLarge) as refused:
        await ask_for_a_dingtalk_token(fresh_cloud, jwt)
    error = refused.value
    assert error.service_code == "InvalidParameter.CustomState"
    assert "refused it as too long" in error.safe_message
    assert (await calls(fresh_cloud)).get("GetResourceOAuth2Token") == 1  # refused once, not retried


async def test_a_jwt_near_the_largest_that_fits_gets_a_link(fresh_cloud) -> None:
    """2,850 characters, near the largest that fits (~2,900): its sealed state stays within 4,096
    characters, so a link is issued."""
    identity = identity_for(fresh_cloud)
    jwt = sized_user_jwt(fresh_cloud, unique("fits"), 2850)
    try:
        async with signed_in(identity, jwt, wait=False):
            with pytest.raises(AuthorizationPending):
                await identity.oauth2_token(provider=fresh_cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"],
                                            scopes=SCOPES, purpose=PURPOSE)
    finally:
        await identity.aclose()
    assert (await calls(fresh_cloud)).get("GetResourceOAuth2Token") == 1
