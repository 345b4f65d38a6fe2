"""What Cerner's code console needs for one FHIR endpoint: derived, never stored.

Launch URLs and the redirect URI are on the stamp's own host name, so a launch never
crosses regions. Scopes are SMART v1 (Cerner advertises v1 only).
"""

from __future__ import annotations

from pydantic import BaseModel

from connector.domain.endpoint import FhirEndpoint

# The provider app reads the visit's context and writes its links back. No online_access: the
# connector keeps no refresh token, so the page asks for a relaunch when the EHR's token ends.
PROVIDER_SCOPES = (
    "launch", "openid", "fhirUser",
    "user/Appointment.read", "user/Appointment.write", "user/Encounter.read",
    "user/Patient.read", "user/Practitioner.read", "user/Location.read",
)
# The patient-portal launch only needs to find the patient's own visit.
PATIENT_SCOPES = (
    "launch", "openid", "fhirUser",
    "patient/Appointment.read", "patient/Encounter.read", "patient/Patient.read",
)
# Reminders scan appointments by location and read the patient's mobile number at send time.
BACKEND_SCOPES = (
    "system/Appointment.read", "system/Patient.read", "system/Location.read", "system/Practitioner.read",
)


class ClientIds(BaseModel):
    provider: str | None
    patient: str | None
    backend: str | None


class Scopes(BaseModel):
    provider: list[str]
    patient: list[str]
    backend: list[str]


class IntegrationRecord(BaseModel):
    endpoint_id: str
    display_name: str
    base_url: str
    environment: str
    provider_launch_url: str
    patient_launch_url: str
    redirect_uri: str
    jwks_url: str
    scopes: Scopes
    client_ids: ClientIds


def integration_record(endpoint: FhirEndpoint, public_base_url: str) -> IntegrationRecord:
    api = f"{public_base_url.rstrip('/')}/api"
    return IntegrationRecord(
        endpoint_id=endpoint.endpoint_id,
        display_name=endpoint.display_name,
        base_url=endpoint.base_url,
        environment=endpoint.environment.value,
        provider_launch_url=f"{api}/launch/provider",
        patient_launch_url=f"{api}/launch/patient",
        redirect_uri=f"{api}/launch/callback",
        jwks_url=f"{api}/.well-known/jwks.json",
        scopes=Scopes(provider=list(PROVIDER_SCOPES), patient=list(PATIENT_SCOPES), backend=list(BACKEND_SCOPES)),
        client_ids=ClientIds(
            provider=endpoint.provider_client_id, patient=endpoint.patient_client_id,
            backend=endpoint.backend_client_id,
        ),
    )
