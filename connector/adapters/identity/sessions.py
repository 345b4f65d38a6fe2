"""Launch sessions sealed into cookies: AES-256-GCM, so a cookie is both secret and tamper-proof.

    sealer = SessionSealer.from_setting(settings.session_key)
    cookie_value = sealer.seal(session)
    session = sealer.open(cookie_value)     # NotAuthenticated if forged, tampered or truncated

The AES-256 key is derived with HKDF-SHA256 from the setting's key material (32 bytes or more,
so Key Vault can hold any strong random value). The associated data binds a sealed value to its purpose and version; a fresh 96-bit nonce per
seal (random, as NIST SP 800-38D allows for up to 2^32 seals per key). The session holds a
FHIR access token, so a cookie must never be readable: encryption, not just a signature.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr, ValidationError

from connector.domain.launch import LaunchSession
from connector.errors import ConfigurationError, NotAuthenticated

PURPOSE = b"virtual-visits/launch-session/v1"
NONCE_BYTES = 12
# Browsers keep cookies up to 4096 bytes (name, value and attributes together).
MAX_SEALED_CHARS = 3800


class SessionSealer:
    def __init__(self, key_material: bytes):
        if len(key_material) < 32:
            raise ConfigurationError("CONNECTOR_SESSION_KEY must be base64 of at least 32 random bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(key_material)
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, value: SecretStr | None) -> "SessionSealer":
        if value is None:
            raise ConfigurationError("CONNECTOR_SESSION_KEY is not set: launches cannot keep a session")
        try:
            key = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("CONNECTOR_SESSION_KEY must be base64 of at least 32 random bytes") from None
        return cls(key)

    def seal(self, session: LaunchSession) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, session.model_dump_json().encode(), PURPOSE)
        value = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        if len(value) > MAX_SEALED_CHARS:
            raise ConfigurationError("the launch session does not fit in a cookie (the EHR's token is too large)")
        return value

    def open(self, value: str) -> LaunchSession:
        refused = NotAuthenticated("this visit page's session is not valid; launch the visit again from the EHR")
        if not value or len(value) > MAX_SEALED_CHARS:
            raise refused
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], PURPOSE)
            return LaunchSession.model_validate_json(plain)
        except (binascii.Error, ValueError, InvalidTag, ValidationError):
            raise refused from None
