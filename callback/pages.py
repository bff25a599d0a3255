"""The small HTML pages the authorization callback answers with."""

from __future__ import annotations

from html import escape

_STYLE = ("body{font-family:system-ui,sans-serif;background:#f4f6f8;margin:0;display:flex;"
          "justify-content:center;align-items:center;min-height:100vh;color:#1f2328}main{background:#fff;"
          "border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:32px;max-width:440px}"
          "h1{font-size:1.3rem;margin:0 0 12px}.ok h1{color:#1a7f37}.fail h1{color:#cf222e}"
          "a.button{display:inline-block;background:#0969da;color:#fff;padding:8px 16px;border-radius:6px;"
          "text-decoration:none}")


def page(title: str, message: str, *, ok: bool, link: tuple[str, str] | None = None) -> str:
    """`link`: (href, label) of the one action the page offers."""
    action = f'<p><a class="button" href="{escape(link[0])}">{escape(link[1])}</a></p>' if link else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title>'
            f'<style>{_STYLE}</style></head><body><main class="{"ok" if ok else "fail"}">'
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p>{action}</main></body></html>")


def success_page(what: str | None) -> str:
    detail = f"The assistant can now use {what}. " if what else "The assistant can go on. "
    return page("Authorization complete", detail + "You can close this tab and return to the chat.", ok=True)


def failure_page(title: str, reason: str) -> str:
    return page(title, reason, ok=False)


SWITCH_USER_LABEL = "Sign in as a different user"


def wrong_user_page(starter: str | None, switch_href: str | None) -> str:
    """Who started the flow only by a display name the IdP gave (never a `sub` or an e-mail address), and the
    way for that user to sign in here instead (`switch_href`; None when the callback cannot sign in)."""
    who = starter or "a different user"
    message = (f"This authorization was started by {who}, and this browser is signed in as someone else, so "
               "it was not completed. If that user is here, they can sign in instead; the permission just "
               "given at the provider in this browser then goes to them, so do it only if the provider "
               "account signed in here is theirs. Otherwise close this tab: they can ask the assistant for a "
               "new link.")
    return page("Wrong user", message, ok=False,
                link=(switch_href, SWITCH_USER_LABEL) if switch_href else None)
