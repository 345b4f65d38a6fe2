"""The demo organisations of `make run`: Contoso Clinic (seeded, with its Cerner sandbox endpoint)
and Fabrikam Health (not set up: its admin adds its own Cerner tenant's URL in the portal), each
its own Cerner tenant in the sandbox; and the connector's apps registered in the sandbox's
"code console" (for every tenant, as Cerner's are)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from connector.composition import container
from dev.sandbox.cerner import DEFAULT_TENANT, SECOND_TENANT, RegisteredClient
from dev.sandbox.entra import CONTOSO_ORGANIZER_OID, CONTOSO_TID, FABRIKAM_TID
from dev.seed import DemoTenant, seed_demo_tenant

# Public client ids, as Cerner's code console would issue them for the demo's apps.
PROVIDER_CLIENT_ID = "0f6a1b7e-demo-provider-app"
PATIENT_CLIENT_ID = "0f6a1b7e-demo-patient-app"
BACKEND_CLIENT_ID = "0f6a1b7e-demo-backend-service"


# Avery Lindqvist, the demo tenant's Global Administrator, gave the SMS consents.
DEMO_ADMIN_OID = "c6ee2195-2f43-43df-9261-340dddf3bb56"


@dataclass(frozen=True)
class DemoOrganisation:
    name: str  # as the sandbox issuer's directory names the Entra tenant
    tenant_id: str  # Entra
    admin: str  # its Global Administrator in the sandbox directory
    cerner_tenant_id: str  # its own Cerner domain in the Cerner sandbox
    seeded: bool  # set up by the seed; otherwise its admin sets it up in the portal


DEMO_ORGANISATIONS = (
    DemoOrganisation("Contoso Clinic", CONTOSO_TID, "Avery Lindqvist", DEFAULT_TENANT, seeded=True),
    DemoOrganisation("Fabrikam Health", FABRIKAM_TID, "Samira Haddad", SECOND_TENANT, seeded=False),
)


def demo_fhir_base(cerner_app: Starlette, organisation: DemoOrganisation) -> str:
    """The organisation's own FHIR base URL in the Cerner sandbox (one Cerner tenant each)."""
    return cerner_app.state.cerner_tenants.get(organisation.cerner_tenant_id).urls.fhir_base


def register_demo_clients(cerner_app: Starlette, entra_app: Starlette, *, host_url: str,
                          sms_number: str | None = None) -> DemoTenant:
    """Register the connector's SMART apps with the Cerner sandbox (every tenant's, as the sandbox
    shares clients); describe the seeded demo tenant, on its own Cerner tenant."""
    sim = cerner_app.state.cerner_tenants.get(DEMO_ORGANISATIONS[0].cerner_tenant_id)
    callback = f"{host_url}/api/launch/callback"
    # The provider app's SMART launch URI is what the sandbox PowerChart's Teams button opens.
    sim.register_client(RegisteredClient(PROVIDER_CLIENT_ID, redirect_uris=(callback,), name="Connector provider launch",
                                         launch_url=f"{host_url}/api/launch/provider"))
    sim.register_client(RegisteredClient(PATIENT_CLIENT_ID, redirect_uris=(callback,), name="Connector patient launch",
                                         launch_url=f"{host_url}/api/launch/patient"))
    # Backend services authenticate with private_key_jwt against the connector's published JWKS.
    sim.register_client(
        RegisteredClient(BACKEND_CLIENT_ID, jwks_uri=f"{host_url}/api/.well-known/jwks.json", name="Connector reminders")
    )
    locations = [location["id"] for location in sim.seed.locations]
    return DemoTenant(
        tenant_id=CONTOSO_TID,
        fhir_base_url=sim.urls.fhir_base,
        location_ids=locations,
        timezone=sim.tz.key,
        provider_client_id=PROVIDER_CLIENT_ID,
        patient_client_id=PATIENT_CLIENT_ID,
        backend_client_id=BACKEND_CLIENT_ID,
        cerner_tenant_id=sim.urls.tenant_id,
        authorize_url=sim.urls.authorize("provider"),
        token_url=sim.urls.token,
        meeting_organizer=CONTOSO_ORGANIZER_OID,
        sms_number=sms_number,
        consent_by_oid=DEMO_ADMIN_OID if sms_number else None,
        reminders=sms_number is not None,
    )


def seed_demo(demo: DemoTenant) -> None:
    seed_demo_tenant(container(), demo)
