"""``/_sandbox/...``: the test and demo controls that real Entra does not have.

``POST /_sandbox/tokens`` mints an access token without a browser::

    {"tenant": "<tid or domain>", "user": "admin" | "user" | "<oid>" | "<upn>",
     "audience": "...", "scopes": ["Admin.ReadWrite"], "roles": [...],
     "expires_in": 3600, "not_before_offset": 0,
     "signed_by": "current" | "previous" | "foreign" | "forged", "claims": {...}}
    -> {"access_token": "...", "token_type": "Bearer", "expires_in": 3600, "claims": {...}}

``POST /_sandbox/app-tokens`` mints an app-only Microsoft Graph token (what the client
credentials grant issues) without a secret::

    {"tenant": "<tid or domain>", "client_id": "<app>", "audience": "https://graph.microsoft.com",
     "roles": [...], "expires_in": 3600, "signed_by": "current", "claims": {...}}

``GET /_sandbox/directory`` lists tenants, users and apps (client secrets redacted);
``POST /_sandbox/keys/rotate`` rotates the signing key (the old one stays in the JWKS).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .tokens import TokenIssuer, UnknownPrincipal

_MINT_OPTIONS = (
    "user", "audience", "scopes", "roles", "client_id", "expires_in", "not_before_offset",
    "signed_by", "claims",
)

_APP_MINT_OPTIONS = ("audience", "roles", "expires_in", "not_before_offset", "signed_by", "claims")


def sandbox_routes(issuer: TokenIssuer) -> list[Route]:
    async def tokens(request: Request) -> JSONResponse:
        try:
            body: dict[str, Any] = await request.json()
            options = {k: body[k] for k in _MINT_OPTIONS if k in body}
            token = issuer.mint_access_token(body["tenant"], **options)
        except UnknownPrincipal as exc:
            return JSONResponse({"error": "unknown_principal", "detail": str(exc)}, 404)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return JSONResponse({"error": "invalid_request", "detail": repr(exc)}, 400)
        claims = jwt.decode(token, options={"verify_signature": False})
        return JSONResponse({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "claims": claims,
        })

    async def app_tokens(request: Request) -> JSONResponse:
        try:
            body: dict[str, Any] = await request.json()
            options = {k: body[k] for k in _APP_MINT_OPTIONS if k in body}
            token = issuer.mint_app_token(body["tenant"], body["client_id"], **options)
        except UnknownPrincipal as exc:
            return JSONResponse({"error": "unknown_principal", "detail": str(exc)}, 404)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return JSONResponse({"error": "invalid_request", "detail": repr(exc)}, 400)
        claims = jwt.decode(token, options={"verify_signature": False})
        return JSONResponse({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "claims": claims,
        })

    async def directory(request: Request) -> JSONResponse:
        apps = []
        for app in issuer.directory.apps:
            shown = asdict(app)
            shown["client_secrets"] = ["(redacted)" for _ in app.client_secrets]
            apps.append(shown)
        return JSONResponse({"tenants": [asdict(t) for t in issuer.directory.tenants], "apps": apps})

    async def rotate(request: Request) -> JSONResponse:
        current = issuer.keys.rotate()
        published = [key.kid for key in issuer.keys.published()]
        return JSONResponse({"kid": current.kid, "published": published})

    return [
        Route("/_sandbox/tokens", tokens, methods=["POST"]),
        Route("/_sandbox/app-tokens", app_tokens, methods=["POST"]),
        Route("/_sandbox/directory", directory, methods=["GET"]),
        Route("/_sandbox/keys/rotate", rotate, methods=["POST"]),
    ]
