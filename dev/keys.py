"""The local stack's own secrets, made once under ``.local/keys`` (git-ignored) and reused.

- ``session.key``: key material for CONNECTOR_SESSION_KEY (the provider page's sealed session);
- ``client-assertion.pem``: the stamp's RSA key for private_key_jwt (served as our JWKS);
- ``graph-notifications.pem`` / ``graph-notifications.key``: the self-signed certificate Graph
  encrypts rich change notifications with, and its private key;
- ``optout.key``: keys the opt-out list's hashes of phone numbers;
- ``acs-events.key``: the secret header the ACS sandbox's Event Grid deliveries carry.

In Azure both live in the stamp's Key Vault; nothing here is ever deployed.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class LocalKeys:
    session_key: str  # base64
    client_assertion_pem: str
    notification_certificate_pem: str
    notification_key_pem: str
    optout_key: str  # base64: keys the opt-out list's number hashes
    acs_events_key: str  # the Event Grid subscription's secret delivery header


def ensure_local_keys(folder: Path) -> LocalKeys:
    folder.mkdir(parents=True, exist_ok=True)
    session = folder / "session.key"
    if not session.exists():
        _write_private(session, base64.b64encode(os.urandom(32)))
    pem = folder / "client-assertion.pem"
    if not pem.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pem, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    certificate, key = folder / "graph-notifications.pem", folder / "graph-notifications.key"
    if not certificate.exists() or not key.exists():
        _notification_certificate(certificate, key)
    optout, events = folder / "optout.key", folder / "acs-events.key"
    if not optout.exists():
        _write_private(optout, base64.b64encode(os.urandom(32)))
    if not events.exists():
        _write_private(events, base64.urlsafe_b64encode(os.urandom(24)))
    return LocalKeys(session.read_text().strip(), pem.read_text(), certificate.read_text(), key.read_text(),
                     optout.read_text().strip(), events.read_text().strip())


def _notification_certificate(certificate_path: Path, key_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "virtual visits connector notifications (local)")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                   .not_valid_after(now + dt.timedelta(days=825)).sign(key, hashes.SHA256()))
    for path in (certificate_path, key_path):
        path.unlink(missing_ok=True)
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
