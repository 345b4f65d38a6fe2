"""A SMART launch in flight: the ``state`` that ties the authorize redirect to its callback.

The state is single use and lives ten minutes; it holds the PKCE verifier and which endpoint
and persona the launch is for, never a token.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from enum import Enum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

STATE_TTL = timedelta(minutes=10)
# 32 random bytes, base64url: 256 bits, well over the 128 the design asks for.
STATE_PATTERN = r"^[A-Za-z0-9_-]{43}$"


class Persona(str, Enum):
    provider = "provider"  # PowerChart EHR launch by a clinician
    patient = "patient"  # the patient portal's launch


class LaunchState(BaseModel):
    model_config = ConfigDict(frozen=True)

    state: str = Field(pattern=STATE_PATTERN)
    tenant_id: str
    endpoint_id: str
    persona: Persona
    client_id: str
    code_verifier: str = Field(min_length=43, max_length=128, repr=False)
    nonce: str = Field(repr=False)
    # SHA-256 of the random value in the browser's launch cookie: the callback must come back to
    # the browser that started the launch (RFC 9700 section 4.7.1), not to whoever holds the URL.
    browser_binding_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Set by the one callback that claims the state (a conditional write), before the row goes.
    taken: bool = False
    created_at: AwareDatetime
    expires_at: AwareDatetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


SESSION_TTL = timedelta(hours=4)
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{22}$"  # 16 random bytes, base64url


class LaunchSession(BaseModel):
    """What the provider's visit page is bound to: one launch, sealed (encrypted and
    authenticated) into a cookie scoped to that launch's own path. Nothing of it is stored
    on our side; it dies with its expiry or the browser window.

    It carries the launch's FHIR access token, because the page reads the visit from FHIR at
    request time and the patient's mobile number at send time (never stored)."""

    model_config = ConfigDict(frozen=True)

    session_id: str = Field(pattern=SESSION_ID_PATTERN)
    tenant_id: str
    endpoint_id: str
    appointment_id: str | None = None  # None while the clinician picks among candidates
    candidates: tuple[str, ...] = ()
    patient_id: str | None = None
    practitioner_id: str | None = None  # the EHR user who launched (fhirUser)
    access_token: str = Field(repr=False)
    token_expires_at: AwareDatetime
    expires_at: AwareDatetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def token_usable(self, now: datetime) -> bool:
        return now < self.token_expires_at
