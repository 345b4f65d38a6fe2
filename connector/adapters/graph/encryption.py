"""The certificate Graph encrypts rich change notifications with, and its private key.

    certificate = notification_certificate_from_settings(settings)  # subscriptions name it
    keys = decryption_keys_from_settings(settings)                 # the webhook decrypts with them

Both None when not configured. The certificate's id is derived from it (the first 16 hex
digits of its SHA-256 thumbprint), so a rotated certificate gets a new id and notifications
still in flight under the old one are told apart. The private key is parsed only where it is
used (the webhook), not on every launch.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from connector.errors import ConfigurationError


def _certificate(settings):
    from cryptography import x509

    if settings.graph_notification_certificate is None and settings.graph_notification_key is None:
        return None
    if settings.graph_notification_certificate is None or settings.graph_notification_key is None:
        raise ConfigurationError("CONNECTOR_GRAPH_NOTIFICATION_CERTIFICATE and CONNECTOR_GRAPH_NOTIFICATION_KEY "
                                 "go together")
    try:
        return x509.load_pem_x509_certificate(settings.graph_notification_certificate.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigurationError("CONNECTOR_GRAPH_NOTIFICATION_CERTIFICATE is not a PEM certificate") from None


def _der_and_id(certificate) -> tuple[bytes, str]:
    from cryptography.hazmat.primitives import serialization

    der = certificate.public_bytes(serialization.Encoding.DER)
    return der, hashlib.sha256(der).hexdigest()[:16]


def notification_certificate_from_settings(settings):
    """A ``NotificationCertificate`` (base64 DER and its id), or None."""
    from connector.adapters.graph.meetings import NotificationCertificate

    certificate = _certificate(settings)
    if certificate is None:
        return None
    der, certificate_id = _der_and_id(certificate)
    return NotificationCertificate(base64.b64encode(der).decode("ascii"), certificate_id)


def decryption_keys_from_settings(settings) -> dict[str, Any] | None:
    """{certificate id: private key}, or None; the key must be the certificate's RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    certificate = _certificate(settings)
    if certificate is None:
        return None
    try:
        key = serialization.load_pem_private_key(
            settings.graph_notification_key.get_secret_value().encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigurationError("CONNECTOR_GRAPH_NOTIFICATION_KEY is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or \
            key.public_key().public_numbers() != certificate.public_key().public_numbers():
        raise ConfigurationError("CONNECTOR_GRAPH_NOTIFICATION_KEY is not the RSA key of the certificate")
    return {_der_and_id(certificate)[1]: key}
