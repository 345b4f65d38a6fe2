"""Rich notifications: resource data encrypted for the subscriber, as Graph does it.

From "Set up change notifications that include resource data"
(https://learn.microsoft.com/graph/change-notifications-with-resource-data, "Decrypting
resource data"): a fresh 256-bit symmetric key per notification item encrypts the resource's
JSON with AES-CBC and PKCS7 padding, the IV being the key's first 16 bytes; the key itself is
encrypted with the subscriber's certificate public key (RSA-OAEP, SHA-1 as the Java sample's
``RSA/ECB/OAEPWithSHA1AndMGF1Padding`` and .NET's ``fOAEP: true`` are); ``dataSignature`` is
the HMAC-SHA256 (with the symmetric key) of the encrypted bytes. All values are base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import BAD_REQUEST, GraphError


def load_certificate(encoded: str) -> x509.Certificate:
    """The subscription's ``encryptionCertificate``: base64 DER (or PEM), an RSA key of 2048-4096 bits."""
    try:
        if "BEGIN CERTIFICATE" in encoded:
            cert = x509.load_pem_x509_certificate(encoded.encode())
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))
    except (ValueError, TypeError):
        raise GraphError(400, BAD_REQUEST, "encryptionCertificate must be a base64-encoded X.509 certificate.") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or not 2048 <= key.key_size <= 4096:
        raise GraphError(400, BAD_REQUEST, "encryptionCertificate must hold an RSA key of 2048 to 4096 bits.")
    return cert


def encrypt_content(data: bytes, cert: x509.Certificate, certificate_id: str) -> dict[str, Any]:
    key = os.urandom(32)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    data_key = public_key.encrypt(
        key, asym_padding.OAEP(mgf=asym_padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    signature = hmac.new(key, encrypted, hashlib.sha256).digest()
    return {
        "data": base64.b64encode(encrypted).decode(),
        "dataSignature": base64.b64encode(signature).decode(),
        "dataKey": base64.b64encode(data_key).decode(),
        "encryptionCertificateId": certificate_id,
        "encryptionCertificateThumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
    }
