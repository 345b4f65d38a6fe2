"""Client authentication at the token endpoint (RFC 6749 section 2.3, RFC 7523, SMART).

One method per request, as RFC 6749 requires:

- ``Authorization: Basic`` -> ``client_secret_basic``;
- ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` +
  ``client_assertion`` -> ``private_key_jwt`` (RS384 / ES384 only, as Cerner advertises);
- ``client_id`` alone -> a public client.

Every failure is ``invalid_client`` with status 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

import httpx
import jwt

from .clients import ClientRegistry, RegisteredClient
from .errors import OAuthError
from .grants import GrantStore

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = {"RS384": "RSA", "ES384": "EC"}  # alg -> the JWK kty that can verify it
MAX_ASSERTION_LIFETIME = 300  # s: SMART Backend Services: exp no more than five minutes ahead
CLOCK_SKEW = 10  # s of tolerance for clients whose clocks run a little fast


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


async def authenticate_client(
    headers: Mapping[str, str], form: Mapping[str, str], registry: ClientRegistry,
    grants: GrantStore, token_url: str,
) -> RegisteredClient:
    basic = headers.get("authorization", "")
    assertion_type = form.get("client_assertion_type")
    if basic and assertion_type:
        raise OAuthError("invalid_request", "use one client authentication method, not two")
    if form.get("client_secret"):
        raise _invalid("client_secret_post is not supported; use client_secret_basic")
    if basic:
        return _basic(basic, form, registry)
    if assertion_type:
        return await _private_key_jwt(form, registry, grants, token_url)
    client = registry.get(form.get("client_id"))
    if client is None:
        raise _invalid("unknown client_id")
    if not client.is_public:
        raise _invalid("confidential client must authenticate (client_secret_basic or private_key_jwt)")
    return client


def _basic(header: str, form: Mapping[str, str], registry: ClientRegistry) -> RegisteredClient:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise _invalid("Authorization header must use the Basic scheme")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before being joined.
    client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    client = registry.get(client_id)
    if not sep or client is None or client.client_secret is None:
        raise _invalid("unknown client or client without a secret")
    if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise _invalid("client secret does not match")
    if form.get("client_id") not in (None, client_id):
        raise _invalid("client_id does not match the Basic credentials")
    return client


async def _private_key_jwt(form: Mapping[str, str], registry: ClientRegistry, grants: GrantStore,
                           token_url: str) -> RegisteredClient:
    if form.get("client_assertion_type") != JWT_BEARER:
        raise _invalid(f"client_assertion_type must be {JWT_BEARER}")
    assertion = form.get("client_assertion") or ""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise _invalid("client_assertion is not a JWT") from None
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise _invalid(f"client_assertion alg {alg!r} not allowed; use RS384 or ES384")
    client = registry.get(unverified.get("iss"))
    if client is None or (client.jwks is None and client.jwks_uri is None):
        raise _invalid("iss is not a client registered with a JWK Set")
    if form.get("client_id") not in (None, client.client_id):
        raise _invalid("client_id does not match the assertion's iss")
    claims = _verify_signature(assertion, alg, header.get("kid"), await _jwk_set(client), client, token_url)
    _check_claims(claims, client, grants)
    return client


async def _jwk_set(client: RegisteredClient) -> Mapping[str, Any]:
    if client.jwks is not None:
        return client.jwks
    # Cerner fetches the registered JWKS URL; so does the simulator, on every assertion,
    # so key rotation in the app under test is visible immediately.
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            response = await http.get(client.jwks_uri or "")
            response.raise_for_status()
            return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _invalid(f"could not fetch the client's JWK Set: {exc}") from None


def _verify_signature(assertion: str, alg: str, kid: str | None, jwk_set: Mapping[str, Any],
                      client: RegisteredClient, token_url: str) -> dict[str, Any]:
    keys = [k for k in jwk_set.get("keys", []) if k.get("kty") == ASSERTION_ALGS[alg]]
    if kid is not None:
        keys = [k for k in keys if k.get("kid") == kid]
    for jwk in keys:
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            return jwt.decode(
                assertion, key, algorithms=[alg], audience=token_url, issuer=client.client_id,
                # exp/iat are checked against the simulator's clock below, not PyJWT's.
                options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False},
            )
        except (jwt.InvalidSignatureError, jwt.PyJWKError):
            continue  # try the client's next key
        except jwt.InvalidAudienceError:
            raise _invalid(f"client_assertion aud must be the token endpoint URL {token_url}") from None
        except jwt.InvalidIssuerError:
            raise _invalid("client_assertion iss must be the client_id") from None
        except jwt.InvalidTokenError as exc:
            raise _invalid(f"client_assertion rejected: {exc}") from None
    raise _invalid("client_assertion signature does not match any registered key")


def _check_claims(claims: Mapping[str, Any], client: RegisteredClient, grants: GrantStore) -> None:
    if claims.get("sub") != client.client_id:
        raise _invalid("client_assertion sub must equal iss (the client_id)")
    now = grants.now()
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= now - CLOCK_SKEW:
        raise _invalid("client_assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise _invalid("client_assertion exp is more than five minutes in the future")
    if not grants.use_jti(client.client_id, str(claims["jti"]), float(exp)):
        raise _invalid("client_assertion jti has already been used")
