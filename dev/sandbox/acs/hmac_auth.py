"""ACS access-key authentication: verify the HMAC-SHA256 signature of every data-plane request.

The SDKs' ``HMACCredentialsPolicy`` (what ``AzureKeyCredential(key)`` selects) signs::

    x-ms-date:            Tue, 11 Jan 2022 17:22:10 GMT
    x-ms-content-sha256:  base64(sha256(body))          (the empty string's hash for GETs)
    Authorization:        HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<sig>

    sig = base64(hmac_sha256(base64decode(access_key),
                 VERB + "\\n" + path_and_query + "\\n" + ";".join(values of SignedHeaders)))

``path_and_query`` is the request target exactly as sent (still percent-encoded, so a phone
number in the path is ``%2B1800...``), and ``host`` is the endpoint's host including the port.
ACS answers any failure with 401 and ``{"error": {"code": "Denied", ...}}``; so does this.
Paths under ``/_sandbox`` are the sandbox's own controls and are not signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import DENIED, error_body

SCHEME = "HMAC-SHA256"
DENIED_MESSAGE = "Denied by the resource provider."
CONTENT_HASH_MESSAGE = "Request 'x-ms-content-sha256' differs from generated content hash."


def decode_access_key(access_key: str) -> bytes:
    """The key's bytes; ACS keys are base64 and the SDK decodes them the same way."""
    try:
        return base64.b64decode(access_key, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("access_key must be base64, like an ACS resource key") from exc


def generate_access_key() -> str:
    """A fresh random key shaped like an ACS resource key (64 bytes, base64)."""
    return base64.b64encode(secrets.token_bytes(64)).decode()


def content_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign(key: bytes, string_to_sign: str) -> str:
    return base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()).decode()


def _parse_authorization(value: str) -> tuple[list[str], str] | None:
    """``(signed header names, signature)`` from the Authorization header, or None if malformed."""
    scheme, _, params = value.partition(" ")
    if scheme != SCHEME:
        return None
    fields = dict(part.partition("=")[::2] for part in params.split("&"))
    names, signature = fields.get("SignedHeaders"), fields.get("Signature")
    if not names or not signature:
        return None
    return names.lower().split(";"), signature


def check_signature(
    key: bytes, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes
) -> str | None:
    """None if the request is signed with ``key``; otherwise the message to deny it with."""
    parsed = _parse_authorization(headers.get("authorization", ""))
    # ACS requires the date, the host and the body hash to be among the signed headers.
    if parsed is None or not {"host", "x-ms-content-sha256"} <= set(parsed[0]):
        return DENIED_MESSAGE
    names, signature = parsed
    if not ({"x-ms-date", "date"} & set(names)) or any(name not in headers for name in names):
        return DENIED_MESSAGE
    if not hmac.compare_digest(headers["x-ms-content-sha256"], content_hash(body)):
        return CONTENT_HASH_MESSAGE
    string_to_sign = f"{method}\n{path_and_query}\n" + ";".join(headers[name] for name in names)
    if not hmac.compare_digest(signature, sign(key, string_to_sign)):
        return DENIED_MESSAGE
    return None


class HmacAuthMiddleware:
    """Refuse unsigned or wrongly signed requests before any route sees them.

    The body is read here (the hash covers it) and replayed to the application unchanged.
    """

    def __init__(self, app: ASGIApp, access_key: str, exempt_prefix: str = "/_sandbox") -> None:
        self.app = app
        self.key = decode_access_key(access_key)
        self.exempt_prefix = exempt_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt_prefix):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        target = scope.get("raw_path") or scope["path"].encode()
        path_and_query = target.decode("latin-1")
        if scope["query_string"]:
            path_and_query += "?" + scope["query_string"].decode("latin-1")
        denial = check_signature(self.key, scope["method"], path_and_query, Headers(scope=scope), body)
        if denial is not None:
            await JSONResponse(error_body(DENIED, denial), 401)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay
