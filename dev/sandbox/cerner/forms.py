"""``application/x-www-form-urlencoded`` bodies, parsed without python-multipart.

Starlette's ``request.form()`` needs python-multipart, which the sandbox does not
install; OAuth only ever posts urlencoded forms, which the standard library parses.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from .errors import OAuthError

FORM = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields; OAuthError for another content type or a repeated parameter."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"the request body must be {FORM}")
    try:
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the form is not valid UTF-8") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:  # RFC 6749 section 3.1: parameters MUST NOT be included more than once
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
        fields[name] = value
    return fields
