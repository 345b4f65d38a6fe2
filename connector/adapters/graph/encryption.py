"""The certificate Graph encrypts rich change notifications with, and its private key.

    keys = notification_keys_from_settings(settings)     # None when not configured
    keys.certificate        # NotificationCertificate: base64 DER + our id for it (subscriptions)
    keys.decryption_keys    # {certificate id: private key} (the webhook's parse_call_events)

The id is derived from the certificate (the first 16 hex digits of its SHA-256 thumbprint),
so a rotated certificate gets a new id and notifications still in flight under the old one are
told apart.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from connector.errors import ConfigurationError


@dataclass(frozen=True)
class NotificationKeys:
    certificate: Any  # connector.adapters.graph.meetings.NotificationCertificate
    decryption_keys: dict[str, Any]


def notification_keys_from_settings(settings) -> NotificationKeys | None:
    if settings.graph_notification_certificate is None and settings.graph_notification_key is None:
        return None
    if settings.graph_notification_certificate is None or settings.graph_notification_key is None:
        raise ConfigurationError("CONNECTOR_GRAPH_NOTIFICATION_CERTIFICATE and CONNECTOR_GRAPH_NOTIFICATION_KEY "
                                 "go together")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from connector.adapters.graph.meetings import NotificationCertificate

    try:
        certificate = x509.load_pem_x509_certificate(settings.graph_notification_certificate.encode("ascii"))
        key = serialization.load_pem_private_key(
            settings.graph_notification_key.get_secret_value().encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ConfigurationError("the Graph notification certificate or key is not valid PEM") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key().public_numbers() != \
            certificate.public_key().public_numbers():
        raise ConfigurationError("CONNECTOR_GRAPH_NOTIFICATION_KEY is not the RSA key of the certificate")
    der = certificate.public_bytes(serialization.Encoding.DER)
    certificate_id = hashlib.sha256(der).hexdigest()[:16]
    return NotificationKeys(NotificationCertificate(base64.b64encode(der).decode("ascii"), certificate_id),
                            {certificate_id: key})
