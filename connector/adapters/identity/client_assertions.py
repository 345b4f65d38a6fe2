"""Our own signing key for ``private_key_jwt`` client authentication (SMART Backend Services
and confidential asymmetric apps): signs client assertions and publishes the public half.

    signer = ClientAssertionSigner.from_pem(settings.client_assertion_key.get_secret_value())
    assertion = signer.assertion(client_id, token_url)   # RS384 for RSA keys, ES384 for P-384
    signer.jwks()                                        # served at /api/.well-known/jwks.json

The key is the stamp's (a Key Vault secret referenced from app settings in Azure; a file made
by the local stack). ``kid`` is the key's RFC 7638 thumbprint, so the same key always has the
same id and a new key a new one. Assertions live five minutes at most and carry a unique
``jti`` (SMART Backend Services).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from connector.errors import ConfigurationError

ASSERTION_LIFETIME_SECONDS = 300


class ClientAssertionSigner:
    def __init__(self, private_key) -> None:
        if isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < 2048:
                raise ConfigurationError("the client assertion key must be RSA 2048 bits or more")
            self.algorithm = "RS384"
            public = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.name == "secp384r1":
            self.algorithm = "ES384"
            public = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        else:
            raise ConfigurationError("the client assertion key must be RSA (RS384) or EC P-384 (ES384)")
        self._key = private_key
        self.kid = _thumbprint(public)
        self._public = {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig", "key_ops": ["verify"]}

    @classmethod
    def from_pem(cls, pem: str) -> "ClientAssertionSigner":
        try:
            key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ConfigurationError("CONNECTOR_CLIENT_ASSERTION_KEY is not an unencrypted PEM private key") from None
        return cls(key)

    def assertion(self, client_id: str, token_url: str, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": issued,
                  "exp": issued + ASSERTION_LIFETIME_SECONDS, "jti": secrets.token_urlsafe(24)}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})

    def jwks(self) -> dict:
        return {"keys": [dict(self._public)]}


def _thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, base64url."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
