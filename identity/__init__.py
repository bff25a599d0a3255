"""identity/: the credential broker. Who the caller is (inbound JWT, jwt_verifier.py; the request context,
context.py) and every credential obtained on their behalf through Agent Identity: workload access tokens
(workload.py), STS credentials (sts.py), OAuth2 resource tokens and the consent they need (oauth2_tokens.py),
all over one SDK-call path (data_plane.py), behind one facade (service.py, `AgentIdentity`). Beside them:
typed errors with safe messages (errors.py, sdk_errors.py), the sealed OAuth2 state (state.py, sealed.py),
caches (cache.py), pending consents (authorization.py) and StsCredential (credentials.py). The callback's web
app is the package `callback`.
"""
