"""identity/: who the caller is (inbound JWT) and every credential obtained on their behalf through Agent
Identity (workload access token, OAuth2 resource tokens, STS), plus the OAuth2 authorization callback.

Modules: settings (IdentitySettings.from_env), context (per-request Caller and event sink), errors (typed,
safe messages), jwt_verifier, state (signed CustomState), cache (bounded single-flight cache),
authorization (pending consents), credentials (StsCredential), sdk_errors, service (AgentIdentity),
callback (router + standalone helper), pages (callback HTML).
"""
