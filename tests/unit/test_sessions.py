"""Launch sessions sealed into cookie values (AES-256-GCM): secret, tamper-proof, bounded."""

from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import SecretStr

from connector.adapters.identity.sessions import MAX_SEALED_CHARS, NONCE_BYTES, SessionSealer
from connector.domain.launch import SESSION_TTL, LaunchSession
from connector.errors import ConfigurationError, NotAuthenticated

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc)
KEY = bytes(range(32))
ACCESS_TOKEN = "eyJraWQiOiIyMDI1In0.eyJzdWIiOiJwcmFjdGl0aW9uZXIifQ.c2lnbmF0dXJlLW9mLWEtcmVhbC10b2tlbg"


def session(**changes) -> LaunchSession:
    base = dict(session_id="AAAAAAAAAAAAAAAAAAAAAA", tenant_id="11111111-2222-3333-4444-555555555555",
                endpoint_id="main", appointment_id="4826003", patient_id="12744003", practitioner_id="4122701",
                access_token=ACCESS_TOKEN, token_expires_at=NOW + timedelta(minutes=59),
                expires_at=NOW + SESSION_TTL)
    return LaunchSession(**{**base, **changes})


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def sealer() -> SessionSealer:
    return SessionSealer(KEY)


def test_a_sealed_session_opens_to_the_same_session(sealer):
    original = session(candidates=("4826006", "4826009"), appointment_id=None)
    sealed = sealer.seal(original)
    assert sealer.open(sealed) == original
    assert sealer.open(sealed).access_token == ACCESS_TOKEN


def test_a_sealed_value_is_cookie_safe_and_different_each_time(sealer):
    one, two = sealer.seal(session()), sealer.seal(session())
    assert one != two  # a fresh nonce per seal
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert set(one) <= alphabet and "=" not in one
    assert b64url_decode(one)[:NONCE_BYTES] != b64url_decode(two)[:NONCE_BYTES]


def base64_forms(secret: bytes) -> list[str]:
    """The stretches of text ``secret`` turns into when base64-encoded at any byte alignment."""
    forms = []
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.append(encode(b"\0" * shift + secret).decode()[4:-4])
    return forms


def test_the_sealed_value_reveals_nothing_of_the_token_or_the_ids(sealer):
    sealed = sealer.seal(session())
    raw = b64url_decode(sealed)
    assert ACCESS_TOKEN not in sealed and ACCESS_TOKEN.encode() not in raw
    for form in base64_forms(ACCESS_TOKEN.encode()):
        assert form not in sealed and form.encode() not in raw
    assert b"access_token" not in raw and b"12744003" not in raw and b"4122701" not in raw


@pytest.mark.parametrize("position", [0, NONCE_BYTES, NONCE_BYTES + 5, -1])
def test_a_tampered_byte_is_refused(sealer, position):
    raw = bytearray(b64url_decode(sealer.seal(session())))
    raw[position] ^= 0x01
    with pytest.raises(NotAuthenticated, match="launch the visit again"):
        sealer.open(b64url_encode(bytes(raw)))


@pytest.mark.parametrize("keep", [0, 5, NONCE_BYTES, NONCE_BYTES + 15, -1])
def test_a_truncated_value_is_refused(sealer, keep):
    raw = b64url_decode(sealer.seal(session()))
    cut = raw[:keep] if keep >= 0 else raw[:keep]
    with pytest.raises(NotAuthenticated):
        sealer.open(b64url_encode(cut))


def test_a_value_sealed_with_another_key_is_refused(sealer):
    other = SessionSealer(bytes(range(1, 33)))
    with pytest.raises(NotAuthenticated):
        sealer.open(other.seal(session()))


@pytest.mark.parametrize("value", ["", "not base64 at all!", "é" * 40, "%%%%", "A", "=" * 8,
                                   "A" * (MAX_SEALED_CHARS + 1)])
def test_values_that_are_not_sealed_sessions_are_refused(sealer, value):
    with pytest.raises(NotAuthenticated):
        sealer.open(value)


def test_a_well_sealed_value_that_is_not_a_session_is_refused(sealer):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from connector.adapters.identity.sessions import PURPOSE

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(KEY)
    nonce = os.urandom(NONCE_BYTES)
    forged = AESGCM(key).encrypt(nonce, b'{"session_id": "short"}', PURPOSE)
    with pytest.raises(NotAuthenticated):
        sealer.open(b64url_encode(nonce + forged))
    # the same plaintext without the purpose as associated data does not open either
    wrong_aad = AESGCM(key).encrypt(nonce, session().model_dump_json().encode(), b"another purpose")
    with pytest.raises(NotAuthenticated):
        sealer.open(b64url_encode(nonce + wrong_aad))


def test_the_refusal_never_repeats_the_value(sealer):
    value = sealer.seal(session())[:-4] + "AAAA"
    with pytest.raises(NotAuthenticated) as caught:
        sealer.open(value)
    assert value not in str(caught.value) and caught.value.__cause__ is None


def test_expiry_is_the_callers_to_honour():
    s = session(expires_at=NOW + timedelta(hours=4), token_expires_at=NOW + timedelta(minutes=30))
    assert not s.expired(NOW) and s.token_usable(NOW)
    assert s.expired(NOW + timedelta(hours=4)) and s.expired(NOW + timedelta(hours=5))
    assert not s.token_usable(NOW + timedelta(minutes=30))
    sealer = SessionSealer(KEY)
    reopened = sealer.open(sealer.seal(s))
    assert reopened.expires_at == s.expires_at and reopened.expired(NOW + timedelta(hours=4))


def test_a_session_too_large_for_a_cookie_is_refused_when_sealed(sealer):
    with pytest.raises(ConfigurationError, match="does not fit in a cookie"):
        sealer.seal(session(access_token="x" * 3000))


def test_the_token_is_kept_out_of_the_sessions_repr():
    assert ACCESS_TOKEN not in repr(session()) and ACCESS_TOKEN not in str(session())


# -- the key setting -----------------------------------------------------------------------------


def test_from_setting_takes_base64_key_material():
    sealer = SessionSealer.from_setting(SecretStr(base64.b64encode(KEY).decode()))
    assert SessionSealer(KEY).open(sealer.seal(session())) == session()


@pytest.mark.parametrize("value", [None, SecretStr("not-base64!"), SecretStr(base64.b64encode(b"short").decode())])
def test_a_missing_or_weak_key_setting_is_a_configuration_error(value):
    with pytest.raises(ConfigurationError, match="CONNECTOR_SESSION_KEY"):
        SessionSealer.from_setting(value)


def test_a_short_key_is_refused():
    with pytest.raises(ConfigurationError):
        SessionSealer(b"x" * 31)
