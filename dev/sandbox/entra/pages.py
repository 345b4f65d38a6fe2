"""The few HTML pages a person sees: the account picker, error pages, "signed out".

Plain, accessible HTML (landmarks, headings, real buttons in a form) so keyboard users,
screen readers and Playwright's ``get_by_role("button", name=...)`` all work alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from starlette.responses import HTMLResponse

from .directory import Tenant

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f3f3f3;color:#1b1b1b}
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:4px;
box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:1.5rem;margin-top:0}h2{font-size:1rem;margin:1.5rem 0 .5rem;color:#555}
ul{list-style:none;padding:0;margin:0}
button{display:block;width:100%;text-align:left;padding:.75rem;margin:.25rem 0;font:inherit;
background:#fff;border:1px solid #8a8886;border-radius:2px;cursor:pointer}
button:hover,button:focus{background:#edebe9;outline:2px solid #0067b8}
.upn,.role{display:block;font-size:.875rem;color:#555}.note{font-size:.875rem;color:#555}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    # Sign-in pages carry one-time form state: never cache them.
    return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})


def account_picker(
    action: str,
    hidden: Mapping[str, str],
    tenants: Sequence[Tenant],
    client_name: str,
    login_hint: str | None,
) -> HTMLResponse:
    """One form; each account is a submit button named ``account`` carrying the user's oid."""
    fields = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items()
    )
    hint = (login_hint or "").lower()
    sections = "".join(_tenant_section(tenant, hint) for tenant in tenants)
    suggestion = f'<p id="hint" class="note">Suggested account: {escape(hint)}</p>' if hint else ""
    body = (
        "<h1>Pick an account</h1>"
        f"<p>to continue to {escape(client_name)}</p>{suggestion}"
        f'<form method="post" action="{escape(action)}">{fields}{sections}</form>'
        '<p class="note">Sandbox identity provider for local development: '
        "fictional people, no passwords.</p>"
    )
    return _page("Sign in to your account", body)


def _tenant_section(tenant: Tenant, hint: str) -> str:
    heading_id = f"t-{tenant.tid}"
    buttons = []
    # Accounts whose sign-in is blocked (the meetings account) are never offered.
    for user in (u for u in tenant.users if u.sign_in_allowed):
        role = "Global Administrator" if user.is_global_administrator else "User"
        hinted = ' aria-describedby="hint"' if hint == user.user_principal_name.lower() else ""
        buttons.append(
            f'<li><button type="submit" name="account" value="{escape(user.oid)}"{hinted}>'
            f"{escape(user.display_name)}"
            f'<span class="upn">{escape(user.user_principal_name)}</span>'
            f'<span class="role">{role}</span></button></li>'
        )
    return (
        f'<section aria-labelledby="{heading_id}">'
        f'<h2 id="{heading_id}">{escape(tenant.display_name)}</h2>'
        f"<ul>{''.join(buttons)}</ul></section>"
    )


def error_page(message: str, status: int = 400) -> HTMLResponse:
    body = (
        "<h1>Sorry, but we're having trouble signing you in.</h1>"
        f'<p role="alert">{escape(message)}</p>'
    )
    return _page("Sign in error", body, status)


def signed_out_page() -> HTMLResponse:
    body = (
        "<h1>You signed out of your account</h1>"
        "<p>It's a good idea to close all browser windows.</p>"
    )
    return _page("Signed out", body)
