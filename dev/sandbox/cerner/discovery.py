"""SMART discovery documents: ``.well-known/smart-configuration`` and ``metadata``.

Both are shaped like Cerner's (fixtures smart-configuration.json and
metadata-capabilitystatement-secure.json) but point at the simulator. Differences:

- ``code_challenge_methods_supported: ["S256"]`` is added. Cerner's published sample
  omits it although Cerner accepts PKCE; SMART 2 requires it. A connector must not
  *depend* on its presence (Cerner may not send it).
- ``management_endpoint``, ``introspection_endpoint`` and the ``health-cards``
  capability are left out: the simulator does not serve them.
- The CapabilityStatement lists only the resources and search parameters simulated.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from .scopes import SCOPES_SUPPORTED
from .urls import CernerUrls

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
CAPABILITIES = (
    "authorize-post", "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "sso-openid-connect", "context-banner", "context-style", "context-ehr-patient", "context-ehr-encounter",
    "permission-patient", "permission-user", "permission-offline", "permission-online", "permission-v1",
)
SEARCH_PARAMS: dict[str, tuple[str, ...]] = {
    "Appointment": ("_id", "patient", "practitioner", "location", "date", "-date-or-req-period", "status",
                    "_count"),
    "Encounter": ("_id", "patient", "subject", "status", "_count"),
    "Location": ("_id",),
    "Patient": ("_id",),
    "Practitioner": ("_id",),
}
_PARAM_TYPES = {"date": "date", "-date-or-req-period": "date", "_count": "number", "_id": "token",
                "status": "token"}


def smart_configuration(urls: CernerUrls) -> dict[str, Any]:
    return {
        "authorization_endpoint": urls.authorize("provider"),
        "token_endpoint": urls.token,
        "revocation_endpoint": urls.revoke,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "jwks_uri": urls.jwks,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": list(CAPABILITIES),
    }


def openid_configuration(urls: CernerUrls) -> dict[str, Any]:
    """The OpenID Provider Configuration at ``{id_token iss}.well-known/openid-configuration``.

    Field for field Cerner's published example (fhir.cerner.com/authorization/openid-connect/),
    including its oddity: ``authorization_endpoint`` and ``token_endpoint`` both equal the
    issuer URL. What a client takes from it is ``issuer`` and ``jwks_uri``; the SMART
    endpoints come from ``.well-known/smart-configuration``, which (like Cerner's) names
    ``jwks_uri`` but no ``issuer``.
    """
    return {
        "response_types_supported": ["code"],
        "request_parameter_supported": False,
        "require_request_uri_registration": False,
        "request_uri_parameter_supported": True,
        "claims_parameter_supported": False,
        "jwks_uri": urls.jwks,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "issuer": urls.oidc_issuer,
        "authorization_endpoint": urls.oidc_issuer,
        "token_endpoint": urls.oidc_issuer,
    }


def capability_statement(urls: CernerUrls, today: date) -> dict[str, Any]:
    description = "Cerner implementation of FHIR on top of Millennium"
    return {
        "resourceType": "CapabilityStatement",
        "url": urls.metadata,
        "name": "CernerCapabilityStatement",
        "title": "Cerner Capability Statement",
        "status": "active",
        "date": today.isoformat(),
        "publisher": "Cerner",
        "description": description,
        "kind": "instance",
        "implementation": {"description": f"{description} (sandbox simulator)", "url": urls.fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": description,
            "security": {
                "extension": [{
                    "extension": [
                        {"valueUri": urls.token, "url": "token"},
                        {"valueUri": urls.revoke, "url": "revoke"},
                        {"valueUri": urls.authorize("provider"), "url": "authorize"},
                    ],
                    "url": OAUTH_URIS,
                }],
                "cors": True,
                "service": [{
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                "code": "SMART-on-FHIR"}],
                    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org/).",
                }],
                "description": "OAuth2 plus SMART extensions",
            },
            "resource": [_resource(t, params) for t, params in SEARCH_PARAMS.items()],
        }],
    }


def _resource(resource_type: str, params: tuple[str, ...]) -> dict[str, Any]:
    interactions = ["read", "search-type"] + (["patch"] if resource_type == "Appointment" else [])
    return {
        "type": resource_type,
        "interaction": [{"code": code} for code in interactions],
        "searchParam": [{"name": p, "type": _PARAM_TYPES.get(p, "reference")} for p in params],
    }
