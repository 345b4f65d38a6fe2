"""SMART App Launch values: the server's endpoints and the token endpoint's answer.

Field names stay as the SMART and OAuth specifications spell them. Tokens are excluded from
``repr`` so a stray log line or assertion message cannot print one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SmartConfiguration(BaseModel):
    """What discovery found for one FHIR base URL (``.well-known/smart-configuration``, else
    the CapabilityStatement's ``oauth-uris`` extension)."""

    model_config = ConfigDict(frozen=True)

    authorization_endpoint: str
    token_endpoint: str
    # The authorization server's keys (they sign id_tokens) and, when published, its issuer.
    jwks_uri: str | None = None
    issuer: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()


class TokenResponse(BaseModel):
    """The token endpoint's answer to a code exchange, with SMART's launch context (and
    Cerner's ``user``, the Cerner user id of who launched)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    access_token: str = Field(min_length=1, repr=False)
    token_type: str = "Bearer"
    expires_in: int | None = None
    scope: str = ""
    id_token: str | None = Field(default=None, repr=False)
    patient: str | None = None
    encounter: str | None = None
    user: str | None = None
    tenant: str | None = None


class DiscoveredEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    source: str  # where it was found, as a phrase for the admin


class Discovery(BaseModel):
    """Everything discovery learned, including why the well-known document was no help."""

    model_config = ConfigDict(frozen=True)

    authorization: DiscoveredEndpoint | None = None
    token: DiscoveredEndpoint | None = None
    jwks_uri: str | None = None
    issuer: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    # Why .well-known/smart-configuration named no endpoint ("" when it did).
    smart_configuration_problem: str = ""

    def configuration(self) -> SmartConfiguration | None:
        """The usable configuration, or None unless both endpoints were found."""
        if self.authorization is None or self.token is None:
            return None
        return SmartConfiguration(
            authorization_endpoint=self.authorization.url, token_endpoint=self.token.url,
            jwks_uri=self.jwks_uri, issuer=self.issuer,
            token_endpoint_auth_methods_supported=self.token_endpoint_auth_methods_supported,
            capabilities=self.capabilities,
        )
