"""The shell every page shares: doctype, language, viewport, inline CSS, a CSP nonce."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from html import escape

CSS = """
:root { color-scheme: light; --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --accent: #4f52b2;
  --ok: #1a7f37; --wait: #9a6700; --bad: #cf222e; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: var(--bg); }
main { max-width: 40rem; margin: 0 auto; padding: 1rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.25rem; margin: 0 0 1rem; }
h1 { font-size: 1.35rem; margin: 0 0 .5rem; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
p { margin: .25rem 0 .75rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
.actions { display: flex; flex-wrap: wrap; gap: .5rem; margin-top: .75rem; }
.button, button { display: inline-block; font: inherit; font-weight: 600; padding: .6rem 1.1rem; border-radius: 6px;
  border: 1px solid var(--accent); background: var(--accent); color: #fff; text-decoration: none; cursor: pointer; }
.button.secondary, button.secondary { background: #fff; color: var(--accent); }
button[disabled] { opacity: .55; cursor: not-allowed; }
.big { font-size: 1.15rem; padding: .9rem 1.4rem; width: 100%; text-align: center; }
.status { font-weight: 600; }
.status[data-state="lobby"] { color: var(--wait); }
.status[data-state="in_visit"] { color: var(--ok); }
.status[data-state="left"] { color: var(--muted); }
.note { color: var(--muted); font-size: .92rem; }
.error { color: var(--bad); }
ul.picks { list-style: none; padding: 0; margin: 0; }
ul.picks li { border-top: 1px solid var(--line); padding: .6rem 0; display: flex; justify-content: space-between;
  align-items: center; gap: .5rem; }
@media (max-width: 420px) { main { padding: .5rem; } .card { padding: .75rem; } }
"""


@dataclass(frozen=True)
class Page:
    html: str
    nonce: str

    @property
    def csp(self) -> str:
        """Only our own inline script and style run; no frames, no plugins, forms post to us."""
        return ("default-src 'none'; "
                f"script-src 'nonce-{self.nonce}'; style-src 'nonce-{self.nonce}'; "
                "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
                "frame-ancestors 'none'")


def render(title: str, body: str, *, lang: str = "en", script: str = "") -> Page:
    nonce = secrets.token_urlsafe(16)
    script_tag = f'<script nonce="{nonce}">{script}</script>' if script else ""
    html = (
        f'<!doctype html><html lang="{escape(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title><style nonce=\"{nonce}\">{CSS}</style></head>"
        f"<body><main>{body}</main>{script_tag}</body></html>"
    )
    return Page(html, nonce)


def message_page(title: str, message: str, *, lang: str = "en", detail: str = "") -> Page:
    """A plain page that says what happened and what to do; never a stack trace."""
    extra = f'<p class="note">{escape(detail)}</p>' if detail else ""
    return render(title, f'<section class="card" role="alert"><h1>{escape(title)}</h1>'
                         f"<p>{escape(message)}</p>{extra}</section>", lang=lang)
