"""The rich-notification certificate and key from settings: parsed where used, checked as a pair."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from connector.adapters.graph.encryption import decryption_keys_from_settings, notification_certificate_from_settings
from connector.errors import ConfigurationError
from connector.settings import Settings
from dev.keys import ensure_local_keys


def settings(certificate: str | None, key: str | None) -> Settings:
    return Settings(stamp_region="us", storage_account_name="stamp", graph_notification_certificate=certificate,
                    graph_notification_key=key)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    one = ensure_local_keys(tmp_path_factory.mktemp("one"))
    other = ensure_local_keys(tmp_path_factory.mktemp("other"))
    return one, other


def test_the_certificate_id_is_its_thumbprint_and_the_key_is_found_under_it(pair):
    one, _ = pair
    configured = settings(one.notification_certificate_pem, one.notification_key_pem)
    certificate = notification_certificate_from_settings(configured)
    der = x509.load_pem_x509_certificate(one.notification_certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER)
    assert base64.b64decode(certificate.certificate_b64) == der
    assert certificate.certificate_id == hashlib.sha256(der).hexdigest()[:16]
    assert list(decryption_keys_from_settings(configured)) == [certificate.certificate_id]


def test_nothing_configured_is_none(pair):
    assert notification_certificate_from_settings(settings(None, None)) is None
    assert decryption_keys_from_settings(settings(None, None)) is None


def test_a_key_of_another_certificate_or_half_a_pair_is_refused(pair):
    one, other = pair
    with pytest.raises(ConfigurationError, match="not the RSA key of the certificate"):
        decryption_keys_from_settings(settings(one.notification_certificate_pem, other.notification_key_pem))
    with pytest.raises(ConfigurationError, match="go together"):
        notification_certificate_from_settings(settings(one.notification_certificate_pem, None))
    with pytest.raises(ConfigurationError, match="not a PEM certificate"):
        notification_certificate_from_settings(settings("-----BEGIN NOTHING-----", one.notification_key_pem))
