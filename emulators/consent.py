"""The emulators' HTML pages: the consent page behind Agent Identity's `AuthorizationURL`, and the IdP's sign-in.

The consent page stands in for DingTalk's login and consent screen: the user sees which app asks for which
scopes and answers with a form POST of `decision=approve` or `decision=deny` to the same URL. The sign-in
page asks for a user name. Browser tests click buttons by their text, so "Approve", "Deny", "Sign in" and
"Cancel" are part of the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_STYLE = """
body { font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; display: flex;
       justify-content: center; align-items: center; min-height: 100vh; color: #1f2328; }
main { background: #fff; border-radius: 12px; box-shadow: 0 2px 12px rgba(0,0,0,.08); padding: 32px;
       max-width: 420px; width: 100%; }
h1 { font-size: 1.25rem; margin: 0 0 12px; }
ul { padding-left: 20px; } code { background: #eef1f4; padding: 1px 5px; border-radius: 4px; }
.actions { display: flex; gap: 12px; margin-top: 24px; }
button { flex: 1; padding: 10px; font-size: 1rem; border-radius: 8px; border: 1px solid #c9d1d9;
         cursor: pointer; background: #fff; }
button.approve { background: #1677ff; color: #fff; border-color: #1677ff; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><main>{body}</main></body></html>")


def consent_page(*, action_url: str, app_name: str, provider: str, scopes: Sequence[str]) -> str:
    """The question: may `app_name` act for you at `provider` with `scopes`?"""
    scope_items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes) or "<li>basic profile</li>"
    return _page(f"Authorize {app_name}", f"""
<h1>Authorize {escape(app_name)}</h1>
<p><strong>{escape(app_name)}</strong> wants to access your <strong>{escape(provider)}</strong> account
with these permissions:</p>
<ul>{scope_items}</ul>
<form method="post" action="{escape(action_url, quote=True)}">
  <div class="actions">
    <button type="submit" name="decision" value="deny">Deny</button>
    <button type="submit" name="decision" value="approve" class="approve">Approve</button>
  </div>
</form>""")


def notice_page(title: str, message: str) -> str:
    """A dead end: the link expired, was already used, or never existed."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")


def sign_in_page(*, action_url: str, issuer: str, problem: str = "") -> str:
    """The IdP's sign-in form: a user name only (any name signs in), "Sign in" or "Cancel"."""
    notice = f"<p><strong>{escape(problem)}</strong></p>" if problem else ""
    return _page("Sign in", f"""
<h1>Sign in</h1>
<p>Sign in to <code>{escape(issuer)}</code> to continue.</p>{notice}
<form method="post" action="{escape(action_url, quote=True)}">
  <label>User name <input name="username" autocomplete="username" autofocus></label>
  <div class="actions">
    <button type="submit" name="action" value="cancel">Cancel</button>
    <button type="submit" name="action" value="sign-in" class="approve">Sign in</button>
  </div>
</form>""")
