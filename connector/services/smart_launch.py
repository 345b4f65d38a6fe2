"""SMART App Launch (EHR launch, as Cerner does it): from ``iss`` + ``launch`` to a verified
sign-in with its launch context.

    authorize_url = launch.begin(Persona.provider, iss=..., launch=...)        # 302 there
    signed_in = launch.complete(state=..., code=..., error=..., browser_bindings=(...))

``begin`` validates before it redirects (medplum's authorize.ts, RFC 6749 4.1.2.1): an ``iss``
that is not a FHIR base URL registered in this stamp, or an endpoint without the persona's
client id, is a plain :class:`LaunchRefused` (a 400 page), never a redirect. Then: SMART
discovery (cached), a single-use ``state`` of 256 bits that lives ten minutes and holds the
PKCE verifier, and a redirect with ``aud=iss``, SMART v1 scopes and PKCE S256. The redirect
URI comes from this stamp's configuration, never from the request's Host header.

``complete`` takes the state (so a replay finds nothing), turns an OAuth error into a
readable refusal, exchanges the code with the endpoint's client authentication, and verifies
the id_token (signature against the server's JWKS, audience, expiry, nonce). The access token
is returned to the caller and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from connector.domain.endpoint import FhirEndpoint, is_loopback_url, normalize_base_url, url_problem
from connector.domain.integration import PATIENT_SCOPES, PROVIDER_SCOPES
from connector.domain.launch import STATE_PATTERN, STATE_TTL, LaunchState, Persona, pkce_challenge
from connector.domain.smart import SmartConfiguration, TokenResponse
from connector.errors import ConnectorError, NotAuthenticated
from connector.services.ports import (
    Clock, EndpointRepository, IdSource, IdTokenVerifier, LaunchStateRepository, SmartDiscovery, SmartTokenClient,
)

log = logging.getLogger("connector.launch")

_STATE = re.compile(STATE_PATTERN)
_LAUNCH = re.compile(r"^[A-Za-z0-9._~+/=-]{1,512}$")
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,64}$")
_FHIR_USER = re.compile(r"(?:^|/)(Practitioner|Patient|Person|RelatedPerson)/((?!\.+$)[A-Za-z0-9.-]{1,64})$")


class LaunchRefused(ConnectorError):
    """The launch cannot go on; the message is a sentence for the person in front of the EHR."""

    http_status = 400
    code = "launch_refused"


@dataclass(frozen=True)
class SignedIn:
    """A completed launch: who, from which endpoint, with what context and token."""

    endpoint: FhirEndpoint
    persona: Persona
    tokens: TokenResponse
    configuration: SmartConfiguration
    user_type: str | None  # "Practitioner" / "Patient" from fhirUser
    user_id: str | None


class SmartLaunch:
    def __init__(self, endpoints: EndpointRepository, states: LaunchStateRepository, discovery: SmartDiscovery,
                 tokens: SmartTokenClient, id_tokens: IdTokenVerifier, clock: Clock, ids: IdSource, *,
                 redirect_uri: str, allow_loopback: bool):
        self._endpoints = endpoints
        self._states = states
        self._discovery = discovery
        self._tokens = tokens
        self._id_tokens = id_tokens
        self._clock = clock
        self._ids = ids
        self.redirect_uri = redirect_uri
        self._allow_loopback = allow_loopback

    def begin(self, persona: Persona, *, iss: str | None, launch: str | None,
              browser_binding: str | None = None) -> str:
        """The authorize URL to redirect to; :class:`LaunchRefused` before any redirect.
        ``browser_binding``: the random value the caller puts in the browser's launch cookie."""
        endpoint = self._endpoint_for(iss)
        if not launch or not _LAUNCH.fullmatch(launch):
            raise LaunchRefused("The EHR did not send a launch context. Open the app from the patient's chart.")
        client_id = _client_id(endpoint, persona)
        configuration = self._configuration(endpoint)
        now = self._clock.now()
        state = LaunchState(
            state=self._ids.token(32), tenant_id=endpoint.tenant_id, endpoint_id=endpoint.endpoint_id,
            persona=persona, client_id=client_id, code_verifier=self._ids.token(48), nonce=self._ids.token(16),
            browser_binding_hash=_sha256(browser_binding) if browser_binding else None,
            created_at=now, expires_at=now + STATE_TTL,
        )
        self._states.save_state(state)
        scopes = PROVIDER_SCOPES if persona is Persona.provider else PATIENT_SCOPES
        query = {
            "response_type": "code", "client_id": client_id, "redirect_uri": self.redirect_uri,
            "scope": " ".join(scopes), "state": state.state, "aud": endpoint.base_url, "launch": launch,
            "code_challenge": pkce_challenge(state.code_verifier), "code_challenge_method": "S256",
            "nonce": state.nonce,
        }
        log.info("launch started: endpoint %s persona %s", endpoint.endpoint_id, persona.value)
        separator = "&" if "?" in configuration.authorization_endpoint else "?"
        return f"{configuration.authorization_endpoint}{separator}{urlencode(query)}"

    def complete(self, *, state: str | None, code: str | None, error: str | None = None,
                 browser_bindings: tuple[str, ...] = ()) -> SignedIn:
        """Take the state (single use), check it came back to the browser that started it (one
        of ``browser_bindings``, the launch cookies it sent), then exchange the code and verify
        who signed in."""
        if not state or not _STATE.fullmatch(state):
            raise LaunchRefused("This sign-in link is not valid. Launch the visit again from the EHR.")
        taken = self._states.take_state(state)
        if taken is None:
            raise LaunchRefused("This sign-in was already used or is unknown. Launch the visit again from the EHR.")
        if taken.expired(self._clock.now()):
            raise LaunchRefused("This sign-in took too long and has expired. Launch the visit again from the EHR.")
        if taken.browser_binding_hash is not None and not any(
                hmac.compare_digest(_sha256(value), taken.browser_binding_hash) for value in browser_bindings):
            log.warning("launch refused: the callback came back to another browser (endpoint %s)", taken.endpoint_id)
            raise LaunchRefused("This sign-in did not start in this browser window. Launch the visit again from "
                                "the EHR.")
        if error:
            shown = error if _OAUTH_ERROR.fullmatch(error) else "an error"
            log.info("launch refused by the EHR: endpoint %s error %s", taken.endpoint_id, shown)
            raise LaunchRefused(f"The EHR did not complete the sign-in ({shown}). "
                                "Launch the visit again, or ask your administrator to check the app's registration.")
        if not code:
            raise LaunchRefused("The EHR sent no authorization code. Launch the visit again from the EHR.")
        stored = self._endpoints.get_endpoint(taken.tenant_id, taken.endpoint_id)
        if stored is None:
            raise LaunchRefused("This EHR is no longer registered with the connector.")
        endpoint = stored.item
        configuration = self._configuration(endpoint)
        tokens = self._tokens.exchange_code(endpoint, configuration, client_id=taken.client_id, code=code,
                                            redirect_uri=self.redirect_uri, code_verifier=taken.code_verifier)
        user_type, user_id = self._who(tokens, configuration, taken)
        log.info("launch signed in: endpoint %s persona %s", endpoint.endpoint_id, taken.persona.value)
        return SignedIn(endpoint, taken.persona, tokens, configuration, user_type, user_id)

    def _configuration(self, endpoint: FhirEndpoint) -> SmartConfiguration:
        """Discovery (for the keys that sign id_tokens), with the authorize and token endpoints the
        admin's validation approved: a server that names new ones must be validated again before
        a browser is sent there or a code (or client secret) is posted there."""
        found = self._discovery.discover(endpoint.base_url, allow_loopback=self._allow_loopback)
        configuration = found.model_copy(update={
            "authorization_endpoint": endpoint.authorize_url or found.authorization_endpoint,
            "token_endpoint": endpoint.token_url or found.token_endpoint,
        })
        for url in (configuration.authorization_endpoint, configuration.token_endpoint):
            if url_problem(url) or not (urlsplit(url).scheme == "https" or
                                        (self._allow_loopback and is_loopback_url(url))):
                raise LaunchRefused("This EHR's sign-in endpoints are not usable. Ask your administrator to "
                                    "validate its FHIR base URL again in the connector's portal.")
        return configuration

    def _endpoint_for(self, iss: str | None) -> FhirEndpoint:
        unknown = LaunchRefused("This EHR is not registered with the connector (unknown iss). "
                                "Ask your administrator to add its FHIR base URL in the connector's portal.")
        if not iss or url_problem(iss) or urlsplit(iss).query or urlsplit(iss).fragment:
            raise unknown  # a FHIR base URL has no query or fragment: no spelling may smuggle one in
        try:
            stored = self._endpoints.find_by_base_url(normalize_base_url(iss))
        except ValueError:
            raise unknown from None
        if stored is None:
            raise unknown
        return stored.item

    def _who(self, tokens: TokenResponse, configuration: SmartConfiguration,
             taken: LaunchState) -> tuple[str | None, str | None]:
        """fhirUser from the verified id_token (else Cerner's ``user`` for a provider)."""
        if not tokens.id_token:
            raise NotAuthenticated("the EHR sent no id_token, so who signed in cannot be verified")
        claims = self._id_tokens.verify(tokens.id_token, configuration, client_id=taken.client_id,
                                        nonce=taken.nonce)
        fhir_user = claims.get("fhirUser") or claims.get("profile")
        match = _FHIR_USER.search(fhir_user) if isinstance(fhir_user, str) else None
        if match:
            return match.group(1), match.group(2)
        if taken.persona is Persona.provider and tokens.user:
            return "Practitioner", tokens.user
        return None, None


def _client_id(endpoint: FhirEndpoint, persona: Persona) -> str:
    client_id = endpoint.provider_client_id if persona is Persona.provider else endpoint.patient_client_id
    if not client_id:
        which = "provider" if persona is Persona.provider else "patient"
        raise LaunchRefused(f"The connector has no {which} app client id for this EHR yet. Ask your administrator "
                            "to enter the client id from Cerner's code console in the connector's portal.")
    return client_id


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def token_expiry(now: datetime, tokens: TokenResponse) -> datetime:
    """When to stop using the access token: a little before the EHR says it expires."""
    lifetime = max((tokens.expires_in or 300) - 30, 30)
    return now + timedelta(seconds=lifetime)
