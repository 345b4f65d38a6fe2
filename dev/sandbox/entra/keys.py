"""RSA signing keys and the published JSON Web Key Set, with rotation.

Entra publishes more keys than it signs with: the next key appears in the JWKS before it
is used and a retired key stays for a while. Validators that cache the JWKS and pick the
key by ``kid`` survive a rotation; ones that take "the first key" do not. The sandbox
keeps the same shape (current + next, plus the previous one after :meth:`KeySet.rotate`)
so the admin API's validator is tested against it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> "SigningKey":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = private_key.public_key().public_numbers()
        # kid = RFC 7638 JWK thumbprint: stable for the key, needs no certificate.
        # (Entra's kid is a certificate thumbprint; validators only compare it.)
        members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        return cls(b64url(hashlib.sha256(canonical).digest()), private_key)

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


class KeySet:
    """The issuer's keys. Thread-safe: tests rotate from outside the server's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = SigningKey.generate()
        self._next = SigningKey.generate()
        self._previous: SigningKey | None = None
        self._foreign: SigningKey | None = None

    @property
    def current(self) -> SigningKey:
        with self._lock:
            return self._current

    @property
    def previous(self) -> SigningKey | None:
        with self._lock:
            return self._previous

    @property
    def foreign(self) -> SigningKey:
        """A key that is never published: tokens signed with it must be rejected."""
        with self._lock:
            if self._foreign is None:
                self._foreign = SigningKey.generate()
            return self._foreign

    def published(self) -> list[SigningKey]:
        with self._lock:
            keys = [self._current, self._next]
            if self._previous is not None:
                keys.append(self._previous)
            return keys

    def rotate(self) -> SigningKey:
        """Sign with the announced next key from now on; return the new current key."""
        upcoming = SigningKey.generate()  # outside the lock: key generation is slow
        with self._lock:
            self._previous, self._current, self._next = self._current, self._next, upcoming
            return self._current

    def jwks(self, issuer: str | None = None) -> dict[str, list[dict[str, str]]]:
        """The JWKS document; Entra adds the issuer template to each key."""
        keys = [key.public_jwk() for key in self.published()]
        if issuer is not None:
            for key in keys:
                key["issuer"] = issuer
        return {"keys": keys}
