"""Identity: verifying the admin API's bearer tokens against Entra ID's published keys."""

from connector.adapters.identity.entra_tokens import (
    EntraTokenValidator,
    JwksCache,
    outbound_ssl_context,
    token_validator_from_settings,
)

__all__ = ["EntraTokenValidator", "JwksCache", "outbound_ssl_context", "token_validator_from_settings"]
