"""Read ``application/x-www-form-urlencoded`` bodies without python-multipart.

Starlette's ``request.form()`` needs python-multipart, which the dev requirements do not
carry; OAuth only ever posts url-encoded forms, and ``parse_qsl`` reads those exactly.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request


async def form_params(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))
