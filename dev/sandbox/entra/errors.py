"""OAuth errors as Entra spells them: an RFC 6749 ``error`` plus an AADSTS code.

Two kinds, because "validate before you redirect" needs both: a
:class:`BadAuthorizeRequest` (unknown tenant, client or redirect URI) is answered with a
plain 400 page and never redirected; an :class:`OAuthError` found after that goes back to
the client (as a redirect from /authorize, as JSON from /token).

The catalogue below names every error the sandbox returns, with Entra's code and wording,
so MSAL classifies them as it would Entra's (e.g. ``login_required`` means interaction).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from starlette.responses import JSONResponse


@dataclass(frozen=True)
class Aadsts:
    error: str
    code: int
    template: str

    def describe(self, **details: str) -> str:
        return f"AADSTS{self.code}: {self.template.format(**details)}"


TENANT_NOT_FOUND = Aadsts("invalid_tenant", 90002, "Tenant '{tenant}' not found.")
MISSING_PARAMETER = Aadsts(
    "invalid_request", 900144, "The request body must contain the following parameter: '{name}'.")
APP_NOT_FOUND = Aadsts(
    "unauthorized_client", 700016,
    "Application with identifier '{client_id}' was not found in the directory.")
REDIRECT_URI_MISMATCH = Aadsts(
    "invalid_request", 50011,
    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
    "URIs configured for the application '{client_id}'.")
USER_NOT_FOUND = Aadsts(
    "invalid_grant", 50034, "The user account does not exist in this directory.")
# Entra also has form_post; the sandbox, serving SPAs only, does not.
UNSUPPORTED_RESPONSE_MODE = Aadsts(
    "invalid_request", 900144,
    "The sandbox supports response_mode query or fragment, not '{mode}'.")
UNSUPPORTED_RESPONSE_TYPE = Aadsts(
    "unsupported_response_type", 700054,
    "response_type '{value}' is not enabled for the application. Expected value is 'code'.")
PKCE_REQUIRED = Aadsts(
    "invalid_request", 9002325,
    "Proof Key for Code Exchange is required for cross-origin authorization code redemption.")
PKCE_METHOD = Aadsts(
    "invalid_request", 501491,
    "Invalid code_challenge or code_challenge_method: the sandbox requires S256.")
PKCE_MISMATCH = Aadsts(
    "invalid_grant", 50148,
    "The code_verifier does not match the code_challenge supplied in the authorization request "
    "for PKCE.")
LOGIN_REQUIRED = Aadsts(
    "login_required", 50058, "A silent sign-in request was sent but no user is signed in.")
SELECT_ACCOUNT = Aadsts(
    "interaction_required", 16000,
    "Multiple user identities are available for the current request.")
SCOPE_INVALID = Aadsts(
    "invalid_scope", 70011,
    "The provided value for the input parameter 'scope' is not valid. "
    "The scope {scope} is not valid.")
SCOPE_MULTIPLE_RESOURCES = Aadsts(
    "invalid_scope", 28000,
    "Provided value for the input parameter scope is not valid because it contains more than "
    "one resource.")
RESOURCE_NOT_FOUND = Aadsts(
    "invalid_resource", 500011,
    "The resource principal named {resource} was not found in the tenant.")
SCOPE_NOT_EXPOSED = Aadsts(
    "invalid_scope", 65005,
    "The application asked for scope '{scope}' that doesn't exist on the resource '{resource}'.")
GRANT_MALFORMED = Aadsts(
    "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
CODE_EXPIRED = Aadsts(
    "invalid_grant", 70008,
    "The provided authorization code or refresh token has expired due to inactivity.")
CODE_REDEEMED = Aadsts(
    "invalid_grant", 54005,
    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use "
    "an existing refresh token.")
GRANT_MISMATCH = Aadsts("invalid_grant", 70000, "Provided grant is invalid or malformed: {reason}.")
SPA_REFRESH_TOKEN_EXPIRED = Aadsts(
    "invalid_grant", 700084,
    "The refresh token was issued to a single page app (SPA), and therefore has a fixed, limited "
    "lifetime of 1.00:00:00, which cannot be extended.")
SPA_NOT_CROSS_ORIGIN = Aadsts(
    "invalid_request", 9002327,
    "Tokens issued for the 'Single-Page Application' client-type may only be redeemed via "
    "cross-origin requests.")
UNSUPPORTED_GRANT_TYPE = Aadsts(
    "unsupported_grant_type", 70003, "The app requested an unsupported grant type '{grant_type}'.")
USER_DISABLED = Aadsts("invalid_grant", 50057, "The user account is disabled.")
# The client credentials grant (confidential clients: the connector's Graph app).
CLIENT_SECRET_MISSING = Aadsts(
    "invalid_client", 7000218,
    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
CLIENT_SECRET_INVALID = Aadsts(
    "invalid_client", 7000215,
    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
    "value, not the client secret ID, for a secret added to app '{client_id}'.")
PUBLIC_CLIENT_SECRET = Aadsts(
    "invalid_client", 700025,
    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.")
SERVICE_PRINCIPAL_MISSING = Aadsts(
    "invalid_client", 7000229,
    "The client application {client_id} is missing service principal in the tenant {tenant}.")
TENANT_REQUIRED = Aadsts(
    "invalid_request", 900023,
    "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain.")
DEFAULT_SCOPE_REQUIRED = Aadsts(
    "invalid_scope", 1002012,
    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
    "with /.default suffixed to the resource identifier (application ID URI).")


class BadAuthorizeRequest(Exception):
    """The request cannot be trusted with a redirect: show a page instead."""

    def __init__(self, spec: Aadsts, **details: str) -> None:
        super().__init__(spec.describe(**details))


class OAuthError(Exception):
    def __init__(self, spec: Aadsts, status: int = 400, **details: str) -> None:
        super().__init__(spec.describe(**details))
        self.error = spec.error
        self.aadsts = spec.code
        self.status = status

    @property
    def description(self) -> str:
        return str(self)

    def response(self) -> JSONResponse:
        """The token endpoint's JSON error body (MSAL reads ``error_codes`` too)."""
        body = {
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.aadsts],
            "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        return JSONResponse(body, self.status, headers={"Cache-Control": "no-store"})
