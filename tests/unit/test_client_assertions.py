"""The stamp's private_key_jwt signer: which keys, RFC 7638 key ids, assertions that verify
against the JWKS it publishes."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connector.adapters.identity.client_assertions import (
    ASSERTION_LIFETIME_SECONDS, ClientAssertionSigner, _thumbprint,
)
from connector.errors import ConfigurationError

TOKEN_URL = "https://authorization.cerner.com/tenants/t/protocols/oauth2/profiles/smart-v1/token"
CLIENT_ID = "0c5ff07e-6c6f-4f50-b2c1-5a3f3e1c4d2b"
# RFC 7638 section 3.1: the example RSA key and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
    "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQ"
    "vRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def p384_key():
    return ec.generate_private_key(ec.SECP384R1())


def pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def verify_with_jwks(assertion: str, jwks: dict, *, audience: str = TOKEN_URL) -> dict:
    header = jwt.get_unverified_header(assertion)
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    key = jwt.PyJWK(jwk, algorithm=header["alg"]).key
    return jwt.decode(assertion, key, algorithms=[jwk["alg"]], audience=audience)


def expected_thumbprint(jwk: dict) -> str:
    """RFC 7638 by hand: required members, sorted, no whitespace, SHA-256, base64url."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = "{" + ",".join(f'"{m}":"{jwk[m]}"' for m in members) + "}"
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


# -- which keys -------------------------------------------------------------------------------------


def test_an_rsa_2048_key_signs_rs384(rsa_key):
    signer = ClientAssertionSigner(rsa_key)
    assert signer.algorithm == "RS384"
    [jwk] = signer.jwks()["keys"]
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == ("RSA", "RS384", "sig", signer.kid)
    assert jwk["key_ops"] == ["verify"]


def test_an_ec_p384_key_signs_es384(p384_key):
    signer = ClientAssertionSigner(p384_key)
    assert signer.algorithm == "ES384"
    [jwk] = signer.jwks()["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-384", "ES384")


@pytest.mark.parametrize("make", [
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
    lambda: ec.generate_private_key(ec.SECP521R1()),
])
def test_weak_or_unsupported_keys_are_refused(make):
    with pytest.raises(ConfigurationError, match="client assertion key"):
        ClientAssertionSigner(make())


def test_the_published_jwks_holds_no_private_material(rsa_key, p384_key):
    for key in (rsa_key, p384_key):
        [jwk] = ClientAssertionSigner(key).jwks()["keys"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_jwks_returns_a_copy(rsa_key):
    signer = ClientAssertionSigner(rsa_key)
    signer.jwks()["keys"][0]["kid"] = "changed"
    assert signer.jwks()["keys"][0]["kid"] == signer.kid


# -- key ids ------------------------------------------------------------------------------------


def test_the_thumbprint_matches_the_rfc_7638_example():
    assert _thumbprint({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"}) == RFC7638_THUMBPRINT
    # optional members do not change it
    assert _thumbprint({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}) == (
        RFC7638_THUMBPRINT)


@pytest.mark.parametrize("which", ["rsa_key", "p384_key"])
def test_kid_is_the_rfc_7638_thumbprint_of_the_public_key(which, request):
    signer = ClientAssertionSigner(request.getfixturevalue(which))
    [jwk] = signer.jwks()["keys"]
    assert signer.kid == expected_thumbprint(jwk)
    assert len(signer.kid) == 43


def test_the_same_key_keeps_its_kid_and_another_key_gets_another(rsa_key):
    assert ClientAssertionSigner(rsa_key).kid == ClientAssertionSigner.from_pem(pem(rsa_key)).kid
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert ClientAssertionSigner(other).kid != ClientAssertionSigner(rsa_key).kid


# -- assertions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rsa_key", "p384_key"])
def test_an_assertion_verifies_with_the_published_jwks(which, request):
    signer = ClientAssertionSigner(request.getfixturevalue(which))
    assertion = signer.assertion(CLIENT_ID, TOKEN_URL)
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": signer.algorithm, "kid": signer.kid, "typ": "JWT"}
    claims = verify_with_jwks(assertion, signer.jwks())
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - claims["iat"] <= 300 == ASSERTION_LIFETIME_SECONDS
    assert abs(claims["iat"] - time.time()) < 30


def test_an_assertion_is_bound_to_its_token_url(rsa_key):
    signer = ClientAssertionSigner(rsa_key)
    with pytest.raises(jwt.InvalidAudienceError):
        verify_with_jwks(signer.assertion(CLIENT_ID, TOKEN_URL), signer.jwks(), audience="https://other.example/token")


def test_every_assertion_has_a_unique_jti(rsa_key):
    signer = ClientAssertionSigner(rsa_key)
    jtis = {jwt.decode(signer.assertion(CLIENT_ID, TOKEN_URL), options={"verify_signature": False})["jti"]
            for _ in range(20)}
    assert len(jtis) == 20 and all(len(j) >= 22 for j in jtis)


def test_an_assertion_made_at_a_given_time_expires_five_minutes_later(rsa_key):
    signer = ClientAssertionSigner(rsa_key)
    claims = jwt.decode(signer.assertion(CLIENT_ID, TOKEN_URL, now=1_700_000_000.7),
                        options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_000_300)


def test_an_assertion_does_not_verify_with_another_signers_jwks(rsa_key):
    other = ClientAssertionSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assertion = ClientAssertionSigner(rsa_key).assertion(CLIENT_ID, TOKEN_URL)
    forged_jwks = {"keys": [{**other.jwks()["keys"][0], "kid": jwt.get_unverified_header(assertion)["kid"]}]}
    with pytest.raises(jwt.InvalidSignatureError):
        verify_with_jwks(assertion, forged_jwks)


# -- loading ------------------------------------------------------------------------------------------


def test_from_pem_loads_rsa_and_ec_keys(rsa_key, p384_key):
    assert ClientAssertionSigner.from_pem(pem(rsa_key)).algorithm == "RS384"
    assert ClientAssertionSigner.from_pem(pem(p384_key)).algorithm == "ES384"


@pytest.mark.parametrize("text", ["", "not a pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                                  "ключ"])
def test_from_pem_refuses_what_is_not_an_unencrypted_private_key(text):
    with pytest.raises(ConfigurationError, match="CONNECTOR_CLIENT_ASSERTION_KEY"):
        ClientAssertionSigner.from_pem(text)


def test_from_pem_refuses_an_encrypted_key(rsa_key):
    encrypted = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw")).decode()
    with pytest.raises(ConfigurationError):
        ClientAssertionSigner.from_pem(encrypted)


def test_from_pem_does_not_echo_the_key(rsa_key):
    broken = pem(rsa_key)[:-60] + "\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigurationError) as caught:
        ClientAssertionSigner.from_pem(broken)
    assert "BEGIN" not in str(caught.value) and caught.value.__cause__ is None
    assert json.dumps(caught.value.as_dict()).count("MII") == 0


# -- key rotation: the key ring ----------------------------------------------------------------------

from types import SimpleNamespace  # noqa: E402

from pydantic import SecretStr  # noqa: E402

from connector.adapters.identity.client_assertions import KeyRing, PublishedKey, key_ring_from_settings  # noqa: E402


def public_pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def settings(**values) -> SimpleNamespace:
    return SimpleNamespace(**{name: SecretStr(value) if isinstance(value, str) else value
                              for name, value in values.items()})


def test_the_ring_signs_with_the_current_key_and_publishes_both(rsa_key, p384_key):
    ring = KeyRing.from_pems(pem(p384_key), previous_pem=pem(rsa_key))
    current, previous = ClientAssertionSigner(p384_key), ClientAssertionSigner(rsa_key)
    assert (ring.kid, ring.algorithm) == (current.kid, "ES384")
    keys = ring.jwks()["keys"]
    assert [k["kid"] for k in keys] == [current.kid, previous.kid] == list(ring.published_kids)
    assert [k["alg"] for k in keys] == ["ES384", "RS384"]
    for jwk in keys:
        assert jwk["kid"] == expected_thumbprint(jwk)
        assert jwk["use"] == "sig" and jwk["key_ops"] == ["verify"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    assertion = ring.assertion(CLIENT_ID, TOKEN_URL)
    assert jwt.get_unverified_header(assertion)["kid"] == current.kid
    assert verify_with_jwks(assertion, ring.jwks())["sub"] == CLIENT_ID


def test_an_assertion_of_the_old_key_still_verifies_during_the_overlap(rsa_key, p384_key):
    before = ClientAssertionSigner(rsa_key).assertion(CLIENT_ID, TOKEN_URL)
    after_rotation = KeyRing.from_pems(pem(p384_key), previous_pem=pem(rsa_key))
    assert verify_with_jwks(before, after_rotation.jwks())["iss"] == CLIENT_ID
    once_done = KeyRing.from_pems(pem(p384_key))
    with pytest.raises(ValueError):  # no key with that kid any more
        verify_with_jwks(before, once_done.jwks())


def test_a_published_key_may_be_given_as_its_public_half(rsa_key, p384_key):
    from_private = KeyRing.from_pems(pem(rsa_key), next_pem=pem(p384_key))
    from_public = KeyRing.from_pems(pem(rsa_key), next_pem=public_pem(p384_key))
    assert from_private.jwks() == from_public.jwks()
    assert PublishedKey.from_pem(public_pem(p384_key), setting="X").kid == ClientAssertionSigner(p384_key).kid
    assert len(from_public.jwks()["keys"]) == 2


def test_the_same_key_twice_is_published_once(rsa_key):
    ring = KeyRing.from_pems(pem(rsa_key), previous_pem=pem(rsa_key), next_pem=public_pem(rsa_key))
    assert len(ring.jwks()["keys"]) == 1


def test_the_rings_jwks_is_a_copy(rsa_key, p384_key):
    ring = KeyRing.from_pems(pem(rsa_key), previous_pem=pem(p384_key))
    ring.jwks()["keys"][1]["kid"] = "changed"
    ring.jwks()["keys"].clear()
    assert [k["kid"] for k in ring.jwks()["keys"]] == [ClientAssertionSigner(rsa_key).kid,
                                                       ClientAssertionSigner(p384_key).kid]


@pytest.mark.parametrize("previous", ["not a pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                                      "ключ"])
def test_a_bad_previous_key_names_its_own_setting(rsa_key, previous):
    with pytest.raises(ConfigurationError, match="CONNECTOR_CLIENT_ASSERTION_PREVIOUS_KEY") as caught:
        KeyRing.from_pems(pem(rsa_key), previous_pem=previous)
    assert caught.value.__cause__ is None


def test_a_weak_previous_key_is_refused_too(rsa_key):
    weak = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigurationError, match="EC P-384"):
        KeyRing.from_pems(pem(rsa_key), previous_pem=public_pem(weak))


def test_key_ring_from_settings(rsa_key, p384_key):
    assert key_ring_from_settings(settings(client_assertion_key=None)) is None
    assert key_ring_from_settings(SimpleNamespace()) is None  # settings without the fields at all
    only_current = key_ring_from_settings(settings(client_assertion_key=pem(rsa_key)))
    assert only_current.published_kids == (ClientAssertionSigner(rsa_key).kid,)
    # Settings that do not (yet) have the previous key field: read with getattr.
    rotated = key_ring_from_settings(settings(client_assertion_key=pem(p384_key),
                                              client_assertion_previous_key=pem(rsa_key)))
    assert rotated.kid == ClientAssertionSigner(p384_key).kid
    assert rotated.published_kids == (ClientAssertionSigner(p384_key).kid, ClientAssertionSigner(rsa_key).kid)
    empty_previous = key_ring_from_settings(settings(client_assertion_key=pem(rsa_key),
                                                     client_assertion_previous_key=""))
    assert len(empty_previous.jwks()["keys"]) == 1
    with pytest.raises(ConfigurationError, match="need CONNECTOR_CLIENT_ASSERTION_KEY"):
        key_ring_from_settings(settings(client_assertion_key=None, client_assertion_previous_key=pem(rsa_key)))


def test_key_ring_from_the_real_settings_object(rsa_key, monkeypatch):
    from connector.settings import Settings

    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "us")
    monkeypatch.setenv("CONNECTOR_STORAGE_ACCOUNT_NAME", "devstoreaccount1")
    monkeypatch.setenv("CONNECTOR_CLIENT_ASSERTION_KEY", pem(rsa_key))
    ring = key_ring_from_settings(Settings())
    assert ring.kid == ClientAssertionSigner(rsa_key).kid
