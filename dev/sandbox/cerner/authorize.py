"""The authorization endpoint: ``.../personas/{provider|patient}/authorize`` (GET or POST).

Validate before redirecting (RFC 6749 section 4.1.2.1): an unknown ``client_id`` or a
``redirect_uri`` that is not exactly registered gets a plain 400 page and never a
redirect, so the endpoint cannot be used as an open redirector. Every later problem goes
back to the redirect_uri as ``error`` + ``error_description`` + ``state``.

There is no login page: the sandbox user is implicit (the launch's user, else the demo
clinician; the demo patient for the patient persona). Success redirects at once.

An OpenID Connect ``nonce`` is kept with the code and echoed in the id_token (OIDC Core
3.1.2.1 / 3.1.3.7: a client that sent one must find it there). Cerner's docs do not mention
``nonce``; echoing it is what OIDC requires of any provider.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from . import scopes
from .clients import RegisteredClient
from .errors import OAuthError, with_query
from .forms import read_form
from .grants import LaunchContext
from .state import CernerSimulator, tenant_of
from .urls import PERSONAS

# RFC 7636 section 4.2: base64url of a SHA-256 digest is 43 characters; allow the full range.
_CODE_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


async def authorize(request: Request) -> Response:
    sim = tenant_of(request)
    if sim is None:
        return PlainTextResponse("Unknown tenant.", 404)
    persona = request.path_params["persona"]
    if persona not in PERSONAS:
        return PlainTextResponse(f"Unknown persona {persona!r}.", 404)
    try:
        params: Mapping[str, str] = request.query_params if request.method == "GET" else await read_form(request)
    except OAuthError as error:  # nothing validated yet: no redirect
        return PlainTextResponse(f"Bad request: {error.description}.", 400)
    client = sim.clients.get(params.get("client_id"))
    if client is None:
        sim.record("authorize", outcome="rejected", reason="unknown client_id")
        return PlainTextResponse("Bad request: unknown client_id.", 400)
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        sim.record("authorize", client_id=client.client_id, outcome="rejected", reason="redirect_uri")
        return PlainTextResponse("Bad request: redirect_uri is not registered for this client.", 400)
    state = params.get("state")
    try:
        granted, context, launch = _validate(sim, params, client, persona)
        # Use the launch up only now that everything else passed; None: a racing use won.
        if launch is not None and sim.grants.take_launch(launch) is None:
            raise OAuthError("invalid_request", "launch is invalid, expired or already used")
    except OAuthError as error:
        sim.record("authorize", client_id=client.client_id, persona=persona, outcome=error.error,
                   reason=error.description)
        return error.redirect(redirect_uri, state)
    code = sim.grants.issue_code(client_id=client.client_id, redirect_uri=redirect_uri, scopes=tuple(granted),
                                 code_challenge=params["code_challenge"], persona=persona, context=context,
                                 nonce=params.get("nonce") or None)
    sim.record("authorize", client_id=client.client_id, persona=persona, outcome="code", scope=" ".join(granted))
    return RedirectResponse(with_query(redirect_uri, {"code": code, "state": params["state"]}), 302)


def _validate(sim: CernerSimulator, params: Mapping[str, str], client: RegisteredClient,
              persona: str) -> tuple[list[str], LaunchContext, str | None]:
    """Granted scopes, launch context and the launch to use up; or the OAuthError to send."""
    if params.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "response_type must be 'code'")
    if not params.get("state"):
        raise OAuthError("invalid_request", "state is required")
    if params.get("aud", "").rstrip("/") != sim.urls.fhir_base:
        raise OAuthError("invalid_request", f"aud must be the FHIR base URL {sim.urls.fhir_base}")
    if params.get("code_challenge_method") != "S256":
        raise OAuthError("invalid_request", "PKCE is required: code_challenge_method must be S256")
    if not _CODE_CHALLENGE.match(params.get("code_challenge", "")):
        raise OAuthError("invalid_request", "PKCE is required: code_challenge is missing or malformed")
    requested = scopes.parse(params.get("scope"))
    if not requested:
        raise OAuthError("invalid_scope", "scope is required")
    unknown = scopes.unknown(requested)
    if unknown:
        raise OAuthError("invalid_scope", f"unknown scope(s) {' '.join(unknown)}; this server speaks SMART v1")
    if scopes.has_context(requested, "system"):
        raise OAuthError("invalid_scope", "system/ scopes are for the client_credentials grant only")
    granted = scopes.grantable(requested, client.scopes)
    context = _launch_context(sim, params, requested, persona)
    if scopes.has_context(granted, "patient") and context.patient is None:
        raise OAuthError("access_denied", "patient/ scopes need a patient context (launch or launch/patient)")
    return granted, context, params.get("launch") if "launch" in requested else None


def _launch_context(sim: CernerSimulator, params: Mapping[str, str], requested: list[str],
                    persona: str) -> LaunchContext:
    launch = params.get("launch")
    if "launch" in requested:
        if not launch:
            raise OAuthError("invalid_request", "the launch scope needs the launch parameter from the EHR")
        context = sim.grants.peek_launch(launch)
        if context is None:
            raise OAuthError("invalid_request", "launch is invalid, expired or already used")
        if persona == "patient":
            return LaunchContext(context.patient, context.encounter, context.patient, context.appointment)
        return context
    # Standalone launch: the sandbox stands in for the patient picker / portal login.
    patient = sim.default_patient if "launch/patient" in requested else None
    user = patient if persona == "patient" else sim.default_user
    return LaunchContext(patient=patient, user=user)
