"""Our own signing keys for ``private_key_jwt`` client authentication (SMART Backend Services
and confidential asymmetric apps): sign client assertions and publish the public halves.

    ring = key_ring_from_settings(settings)              # None when no key is configured
    assertion = ring.assertion(client_id, token_url)     # RS384 for RSA keys, ES384 for P-384
    ring.jwks()                                          # served at /api/.well-known/jwks.json

The keys are the stamp's (Key Vault secrets referenced from app settings in Azure; files made
by the local stack). ``kid`` is each key's RFC 7638 thumbprint, so the same key always has the
same id and a new key a new one. Assertions live five minutes at most and carry a unique
``jti`` (SMART Backend Services).

Rotation (:class:`KeyRing`): the ring signs with its *current* key and publishes the public
half of every key it holds, current first. SMART's authorization servers fetch the client's
JWK Set URL and pick the key by ``kid``; a server that cached our set before the rotation
meets an unknown ``kid`` and must fetch again (SMART: it may cache no longer than our
``Cache-Control`` says, five minutes). So, to rotate without a failed scan:

1. ``CONNECTOR_CLIENT_ASSERTION_NEXT_KEY`` = the new key: it is published, not yet used;
2. after the JWKS cache lifetime (5 minutes), move the old key to
   ``CONNECTOR_CLIENT_ASSERTION_PREVIOUS_KEY`` and the new one to
   ``CONNECTOR_CLIENT_ASSERTION_KEY`` (clear ``..._NEXT_KEY``): the new key signs, both are published;
3. once no assertion signed with the old key can be alive (5 minutes), clear ``..._PREVIOUS_KEY``.

Step 1 may be skipped where the server refetches on an unknown ``kid`` (Cerner's simulator does).
The previous and next keys may be given as private or public PEM: only their public halves are
ever used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from connector.errors import ConfigurationError

ASSERTION_LIFETIME_SECONDS = 300
KEY_SETTING = "CONNECTOR_CLIENT_ASSERTION_KEY"
PREVIOUS_KEY_SETTING = "CONNECTOR_CLIENT_ASSERTION_PREVIOUS_KEY"
NEXT_KEY_SETTING = "CONNECTOR_CLIENT_ASSERTION_NEXT_KEY"


class ClientAssertionSigner:
    def __init__(self, private_key) -> None:
        if not isinstance(private_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ConfigurationError("the client assertion key must be RSA (RS384) or EC P-384 (ES384)")
        self.algorithm, public = _public_jwk(private_key.public_key())
        self._key = private_key
        self.kid = _thumbprint(public)
        self._public = {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig", "key_ops": ["verify"]}

    @classmethod
    def from_pem(cls, pem: str, *, setting: str = KEY_SETTING) -> "ClientAssertionSigner":
        try:
            key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ConfigurationError(f"{setting} is not an unencrypted PEM private key") from None
        return cls(key)

    def assertion(self, client_id: str, token_url: str, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": issued,
                  "exp": issued + ASSERTION_LIFETIME_SECONDS, "jti": secrets.token_urlsafe(24)}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._public)

    def jwks(self) -> dict:
        return {"keys": [self.public_jwk()]}


class PublishedKey:
    """A key that is published but never signs (the previous key after a rotation, the next one
    before it): only its public half is kept, whichever half it was given as."""

    def __init__(self, public_key) -> None:
        self.algorithm, public = _public_jwk(public_key)
        self.kid = _thumbprint(public)
        self._public = {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig", "key_ops": ["verify"]}

    @classmethod
    def from_pem(cls, pem: str, *, setting: str) -> "PublishedKey":
        data = pem.encode("ascii", errors="replace")
        try:
            if b"PUBLIC KEY-----" in data:
                key = serialization.load_pem_public_key(data)
            else:
                key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ConfigurationError(f"{setting} is not an unencrypted PEM private key or a PEM public key") from None
        return cls(key)

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._public)


class KeyRing:
    """Signs with the current key; publishes the current key and every other key it holds.

    Quacks like :class:`ClientAssertionSigner` (``assertion``, ``jwks``, ``algorithm``, ``kid``),
    so the token clients and the JWKS function take either."""

    def __init__(self, current: ClientAssertionSigner,
                 published: Iterable[ClientAssertionSigner | PublishedKey] = ()) -> None:
        self.current = current
        keys: dict[str, dict[str, Any]] = {current.kid: current.public_jwk()}
        for key in published:
            keys.setdefault(key.kid, key.public_jwk())  # the same key twice is published once
        self._keys = keys

    @classmethod
    def from_pems(cls, current_pem: str, previous_pem: str | None = None,
                  next_pem: str | None = None) -> "KeyRing":
        current = ClientAssertionSigner.from_pem(current_pem)
        others = [PublishedKey.from_pem(pem, setting=setting)
                  for pem, setting in ((previous_pem, PREVIOUS_KEY_SETTING), (next_pem, NEXT_KEY_SETTING)) if pem]
        return cls(current, others)

    @property
    def algorithm(self) -> str:
        return self.current.algorithm

    @property
    def kid(self) -> str:
        return self.current.kid

    @property
    def published_kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def assertion(self, client_id: str, token_url: str, *, now: float | None = None) -> str:
        return self.current.assertion(client_id, token_url, now=now)

    def jwks(self) -> dict:
        return {"keys": [dict(key) for key in self._keys.values()]}


def key_ring_from_settings(settings) -> KeyRing | None:
    """The stamp's key ring from ``client_assertion_key`` (+ ``client_assertion_previous_key``,
    ``client_assertion_next_key`` where the settings have them), or None when no key is set."""
    current = _secret(getattr(settings, "client_assertion_key", None))
    previous = _secret(getattr(settings, "client_assertion_previous_key", None))
    upcoming = _secret(getattr(settings, "client_assertion_next_key", None))
    if current is None:
        if previous or upcoming:
            raise ConfigurationError(f"{PREVIOUS_KEY_SETTING} and {NEXT_KEY_SETTING} need {KEY_SETTING}, "
                                     "the key that signs")
        return None
    return KeyRing.from_pems(current, previous, upcoming)


def _secret(value) -> str | None:
    if value is None:
        return None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return text or None


def _public_jwk(public_key) -> tuple[str, dict[str, Any]]:
    """(the algorithm the key signs with, its public JWK); ConfigurationError for other keys."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise ConfigurationError("the client assertion key must be RSA 2048 bits or more")
        return "RS384", RSAAlgorithm.to_jwk(public_key, as_dict=True)
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp384r1":
        return "ES384", ECAlgorithm.to_jwk(public_key, as_dict=True)
    raise ConfigurationError("the client assertion key must be RSA (RS384) or EC P-384 (ES384)")


def _thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, base64url."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
