"""The token endpoint (``.../smart-v1/token``) and revocation (``.../token/revoke``).

Grants: ``authorization_code`` (with PKCE S256, for EHR / standalone launches) and
``client_credentials`` (SMART Backend Services, ``system/`` scopes). The response carries
SMART's launch context plus what Cerner adds (``user``, ``tenant``, ``username``); see
a real Cerner answer quoted on the Oracle forums:
``{"access_token", "patient", "scope", "need_patient_banner", "smart_style_url",
"encounter", "token_type", "expires_in", "user", "tenant", "username"}``.
``user`` is the Cerner user id (the Practitioner id for clinicians), ``username`` the login,
which is also the id_token's ``sub``. No refresh tokens are issued.

Sandbox fault (tests only): ``sim.id_token_fault`` set to ``"signature"`` issues id_tokens
whose RS256 signature does not verify against the published JWKS (one bit of it flipped,
same ``kid``); ``"audience"`` issues correctly signed id_tokens whose ``aud`` is another
client's id. Everything else in the token response stays as it would be; set it back to
None to end the fault.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

import jwt
from jwt.utils import base64url_decode, base64url_encode
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import scopes
from .client_auth import authenticate_client
from .clients import RegisteredClient
from .errors import NO_STORE, OAuthError
from .forms import read_form
from .grants import TOKEN_TTL, AccessToken, AuthorizationCode
from .state import CernerSimulator, tenant_of

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 section 4.1


async def token(request: Request) -> Response:
    sim = tenant_of(request)
    if sim is None:
        return _unknown_tenant()
    grant_type = None
    try:
        fields = await read_form(request)
        grant_type = fields.get("grant_type")
        client = await authenticate_client(request.headers, fields, sim.clients, sim.grants, sim.urls.token,
                                            sim.jwks_cache)
        if grant_type == "authorization_code":
            body = _exchange_code(sim, client, fields)
        elif grant_type == "client_credentials":
            body = _client_credentials(sim, client, fields)
        elif not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        else:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    except OAuthError as error:
        sim.record("token", grant_type=grant_type, outcome=error.error, reason=error.description)
        return error.json_response()
    sim.record("token", grant_type=grant_type, client_id=client.client_id, outcome="issued", scope=body["scope"])
    return JSONResponse(body, headers=NO_STORE)


def _exchange_code(sim: CernerSimulator, client: RegisteredClient, fields: dict[str, str]) -> dict[str, Any]:
    code = fields.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required")
    grant = sim.grants.redeem_code(code)  # used up now, whatever happens next
    if grant is None:
        raise OAuthError("invalid_grant", "code is invalid, expired or already used")
    if grant.client_id != client.client_id:
        raise OAuthError("invalid_grant", "code was issued to another client")
    if fields.get("redirect_uri") != grant.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
    verifier = fields.get("code_verifier", "")
    if not _VERIFIER.match(verifier):
        raise OAuthError("invalid_request", "code_verifier is required (43-128 unreserved characters)")
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    if not hmac.compare_digest(digest, grant.code_challenge):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
    issued = sim.grants.issue_token(client_id=client.client_id, scopes=grant.scopes, context=grant.context,
                                    persona=grant.persona, code=code)
    body = _token_body(issued)
    context = grant.context
    body.update({key: value for key, value in (("patient", context.patient), ("encounter", context.encounter))
                 if value is not None})
    body.update({
        # PowerChart already shows the patient banner around an EHR-launched app.
        "need_patient_banner": grant.persona == "patient",
        "smart_style_url": sim.urls.smart_style,
        "user": context.user,
        "tenant": sim.urls.tenant_id,
        "username": sim.principal(context.user, grant.persona),
    })
    if "openid" in grant.scopes:
        body["id_token"] = _id_token(sim, client, grant, context.user)
    return body


def _client_credentials(sim: CernerSimulator, client: RegisteredClient, fields: dict[str, str]) -> dict[str, Any]:
    if client.is_public:
        raise OAuthError("unauthorized_client", "client_credentials needs a confidential client")
    requested = scopes.parse(fields.get("scope"))
    if not requested:
        raise OAuthError("invalid_scope", "scope is required")
    wrong = [s for s in requested if not s.startswith("system/") or scopes.unknown([s])]
    if wrong:
        raise OAuthError("invalid_scope", f"client_credentials accepts SMART v1 system/ scopes only: {' '.join(wrong)}")
    granted = scopes.grantable(requested, client.scopes)
    if not granted:
        raise OAuthError("invalid_scope", "none of the requested scopes is registered for this client")
    return _token_body(sim.grants.issue_token(client_id=client.client_id, scopes=tuple(granted)))


def _token_body(issued: AccessToken) -> dict[str, Any]:
    return {"access_token": issued.value, "token_type": "Bearer", "expires_in": TOKEN_TTL,
            "scope": " ".join(issued.scopes)}


def _id_token(sim: CernerSimulator, client: RegisteredClient, grant: AuthorizationCode, user: str | None) -> str:
    """An id_token shaped like the one fhir.cerner.com/authorization/openid-connect/ decodes.

    Cerner's example claims: ``sub`` (the login, not the FHIR id), ``aud`` (the client id),
    ``iss`` (the tenant's OIDC identity provider, trailing slash), ``iat``, ``exp``,
    ``fhirUser`` and, with the ``profile`` scope, ``profile`` (the same URL, SMART v1's claim)
    and ``name``. Signed RS256 with a ``kid`` from the jwks at ``/jwk``. ``nonce`` is echoed
    when the authorize request had one (OpenID Connect Core 3.1.2.1).
    """
    persona = grant.persona
    resource_type = "Patient" if persona == "patient" else "Practitioner"
    now = int(sim.grants.now())
    claims: dict[str, Any] = {
        "sub": sim.principal(user, persona), "aud": client.client_id, "iss": sim.urls.oidc_issuer,
        "exp": now + TOKEN_TTL, "iat": now,
    }
    resource_url = f"{sim.urls.fhir_base}/{resource_type}/{user}"
    if "fhirUser" in grant.scopes or "profile" in grant.scopes:
        claims["fhirUser"] = resource_url
    if "profile" in grant.scopes:
        claims["profile"] = resource_url
        name = sim.display_name(user, persona)
        if name:
            claims["name"] = name
    if grant.nonce is not None:
        claims["nonce"] = grant.nonce
    fault = sim.id_token_fault
    if fault == "audience":
        claims["aud"] = "sandbox-another-client"
    signed = jwt.encode(claims, sim.signing_key, algorithm="RS256", headers={"kid": sim.signing_kid, "typ": "JWT"})
    if fault == "signature":
        head, payload, signature = signed.split(".")
        broken = bytearray(base64url_decode(signature))
        broken[len(broken) // 2] ^= 0x01
        signed = f"{head}.{payload}.{base64url_encode(bytes(broken)).decode('ascii')}"
    return signed


async def revoke(request: Request) -> Response:
    """RFC 7009: always 200, whether or not the token existed."""
    sim = tenant_of(request)
    if sim is None:
        return _unknown_tenant()
    try:
        value = (await read_form(request)).get("token")
    except OAuthError as error:
        return error.json_response()
    if value:
        sim.grants.revoke(value)
    sim.record("revoke")
    return Response(status_code=200, headers=NO_STORE)


def _unknown_tenant() -> Response:
    return JSONResponse({"error": "invalid_request", "error_description": "unknown tenant"}, 404, headers=NO_STORE)
