"""The small HTML pages the authorization callback answers with."""

from __future__ import annotations

from html import escape

_STYLE = ("body{font-family:system-ui,sans-serif;background:#f4f6f8;margin:0;display:flex;"
          "justify-content:center;align-items:center;min-height:100vh;color:#1f2328}main{background:#fff;"
          "border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:32px;max-width:440px}"
          "h1{font-size:1.3rem;margin:0 0 12px}.ok h1{color:#1a7f37}.fail h1{color:#cf222e}")


def page(title: str, message: str, *, ok: bool) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title>'
            f'<style>{_STYLE}</style></head><body><main class="{"ok" if ok else "fail"}">'
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p></main></body></html>")


def success_page(what: str | None) -> str:
    detail = f"The assistant can now use {what}. " if what else "The assistant can go on. "
    return page("Authorization complete", detail + "You can close this tab and return to the chat.", ok=True)


def failure_page(title: str, reason: str) -> str:
    return page(title, reason, ok=False)
