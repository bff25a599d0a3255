"""The authorization callback, a small web app of its own: the route the provider sends the browser back to
(routes.py), the browser's sign-in at the users' IdP (oidc.py, OpenID Connect with PKCE), its cookies
(browser_session.py) and its pages (pages.py). It asks identity/ (the credential broker) to complete a flow;
it holds no credential itself.
"""
