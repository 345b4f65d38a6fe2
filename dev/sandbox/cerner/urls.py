"""Every URL of the simulator, laid out the way Cerner lays out its production hosts.

Cerner serves FHIR at ``https://fhir-ehr.cerner.com/r4/{tenant}`` and OAuth at
``https://authorization.cerner.com/tenants/{tenant}/protocols/oauth2/profiles/smart-v1/...``
with the *persona* (provider / patient) in the authorize path. The simulator keeps those
paths but serves both from one loopback host (``public_url``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

PERSONAS = ("provider", "patient")


@dataclass(frozen=True)
class CernerUrls:
    public_url: str
    tenant_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    @property
    def fhir_base(self) -> str:
        return f"{self.public_url}/r4/{self.tenant_id}"

    @property
    def metadata(self) -> str:
        return f"{self.fhir_base}/metadata"

    @property
    def smart_configuration(self) -> str:
        return f"{self.fhir_base}/.well-known/smart-configuration"

    @property
    def oauth_base(self) -> str:
        return f"{self.public_url}/tenants/{self.tenant_id}/protocols/oauth2/profiles/smart-v1"

    def authorize(self, persona: str = "provider") -> str:
        return f"{self.oauth_base}/personas/{persona}/authorize"

    @property
    def token(self) -> str:
        return f"{self.oauth_base}/token"

    @property
    def revoke(self) -> str:
        return f"{self.oauth_base}/token/revoke"

    @property
    def jwks(self) -> str:
        """The authorization server's own keys (they sign id_tokens); Cerner's is ``/jwk``."""
        return f"{self.public_url}/jwk"

    @property
    def oidc_issuer(self) -> str:
        """The id_token ``iss``: Cerner's identity provider (idsp) of the tenant, trailing slash
        included, e.g. ``https://authorization.cerner.com/tenants/{t}/oidc/idsps/{t}/``
        (fhir.cerner.com/authorization/openid-connect/; the sandbox's idsp id is the tenant id)."""
        return f"{self.public_url}/tenants/{self.tenant_id}/oidc/idsps/{self.tenant_id}/"

    @property
    def openid_configuration(self) -> str:
        """OpenID Connect Discovery 4.1: the issuer followed by ``.well-known/openid-configuration``."""
        return f"{self.oidc_issuer}.well-known/openid-configuration"

    @property
    def smart_style(self) -> str:
        return f"{self.public_url}/styles/smart-v1.json"

    @property
    def launch(self) -> str:
        """Sandbox-only: mints EHR launch contexts (what PowerChart does before opening an app)."""
        return f"{self.public_url}/_sandbox/launch"

    @property
    def powerchart(self) -> str:
        """Sandbox-only: a clinician's day in "PowerChart", with a Teams button per video visit."""
        return f"{self.public_url}/_sandbox/powerchart"

    def path(self, url: str) -> str:
        """The path part of one of the URLs above, for route tables."""
        return urlsplit(url).path
