"""The simulator's state, one :class:`CernerSimulator` per Cerner tenant (domain) the app serves,
all in ``app.state.cerner_tenants`` (:class:`CernerTenants`); the first tenant's is also
``app.state.cerner``: what tests reach into.

Sandbox fault for tests: ``sim.id_token_fault`` (None, ``"signature"`` or ``"audience"``)
makes the token endpoint issue broken id_tokens until it is set back to None (see
:mod:`.token`).
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ..faults import FaultSwitches
from . import changes
from .client_auth import JwksCache
from .clients import ClientRegistry, RegisteredClient
from .grants import GrantStore, LaunchContext
from .paging import PageContexts
from .schedule import ScheduledVisit, appointments_on
from .seed import SeedData, participant
from .store import ResourceStore
from .urls import CernerUrls

# What ``CernerSimulator.id_token_fault`` can be set to (besides None): see token.py.
ID_TOKEN_FAULTS = ("signature", "audience")


class CernerSimulator:
    """Clients, grants, resources, faults and an audit trail of what callers did.

    Safe to call from a test's thread while the server runs in another: registries and
    stores lock internally.
    """

    def __init__(self, *, urls: CernerUrls, seed: SeedData,
                 clients: Iterable[RegisteredClient] | ClientRegistry = (), faults: FaultSwitches | None = None) -> None:
        self.urls = urls
        self.seed = seed
        self.tz = seed.tz
        self.store = ResourceStore(seed.resources())
        # A registry passed in is shared (Cerner's code console issues a client id once, for every
        # domain); grants, launches and tokens are the tenant's own.
        self.clients = clients if isinstance(clients, ClientRegistry) else ClientRegistry.of(clients)
        self.grants = GrantStore()
        self.pages = PageContexts()
        self.faults = faults if faults is not None else FaultSwitches()
        self._audit: deque[dict[str, Any]] = deque(maxlen=2000)
        self._audit_lock = threading.Lock()
        # Signs id_tokens; published at urls.jwks. Made per app: nothing outlives the process.
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_kid = "sandbox-" + urls.tenant_id[:8]
        self._id_token_fault: str | None = None
        # Clients' JWK Sets read from their registered URLs (Cache-Control, refetch on unknown kid).
        self.jwks_cache = JwksCache(lambda: self.grants.now(), self.record)
        self._bulk = changes.BulkSeeder(self.store, urls.tenant_id, self.tz,
                                        [(p["id"], p["name"][0]["text"]) for p in seed.practitioners])

    @property
    def id_token_fault(self) -> str | None:
        """Test-only sandbox fault: how the next id_tokens are broken (None: they are not)."""
        return self._id_token_fault

    @id_token_fault.setter
    def id_token_fault(self, fault: str | None) -> None:
        if fault is not None and fault not in ID_TOKEN_FAULTS:
            raise ValueError(f"id_token_fault must be None or one of {ID_TOKEN_FAULTS}, not {fault!r}")
        self._id_token_fault = fault

    # -- clients and launches ------------------------------------------------------------

    def register_client(self, client: RegisteredClient) -> None:
        self.clients.register(client)

    def mint_launch(self, *, patient: str | None = None, encounter: str | None = None,
                    appointment: str | None = None, user: str | None = None) -> str:
        """An EHR launch code for this context, as PowerChart mints before opening an app.

        With ``appointment`` alone, the patient, the practitioner (as the user) and the
        appointment's Encounter are filled in. Raises ValueError for unknown ids.
        """
        if appointment is not None:
            found = self._require("Appointment", appointment)
            patient = patient or (participant(found, "Patient") or (None,))[0]
            user = user or (participant(found, "Practitioner") or (None,))[0]
            encounter = encounter or self.encounter_for(appointment)
        for resource_type, resource_id in (("Patient", patient), ("Encounter", encounter)):
            if resource_id is not None:
                self._require(resource_type, resource_id)
        user = user or self.default_user
        self._require("Practitioner", user)
        launch = self.grants.mint_launch(LaunchContext(patient, encounter, user, appointment))
        self.record("launch", patient=patient, encounter=encounter, appointment=appointment, user=user)
        return launch

    def encounter_for(self, appointment_id: str) -> str | None:
        reference = f"Appointment/{appointment_id}"
        return next((e["id"] for e in self.store.all("Encounter")
                     if any(a.get("reference") == reference for a in e.get("appointment", []))), None)

    @property
    def default_user(self) -> str:
        """The demo clinician signed in to "PowerChart" (no login page in the sandbox)."""
        return self.seed.practitioner_ids[0]

    @property
    def default_patient(self) -> str:
        """The demo patient signed in to the "patient portal" for patient-persona launches."""
        return self.seed.patient_ids[0]

    def principal(self, user: str | None, persona: str) -> str | None:
        """The user's login as Cerner's identity provider knows it: the id_token ``sub`` and
        the token response's ``username``. Not the FHIR id: Cerner's ``sub`` "may be a user's
        username, or could be an opaque identifier (such as a UUID), depending on the tenant's
        identity strategy" (fhir.cerner.com/authorization/openid-connect/). Clinicians get a
        username (``erivera``), patients an opaque UUID, both stable for a given user."""
        if user is None:
            return None
        resource = self.store.get("Patient" if persona == "patient" else "Practitioner", user)
        if persona == "patient" or resource is None:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.urls.oidc_issuer}{persona}/{user}"))
        name = resource["name"][0]
        return f"{name['given'][0][0]}{name['family']}".lower()

    def display_name(self, user: str | None, persona: str) -> str | None:
        """The user's name as the id_token's ``name`` claim gives it (``Family, Given``)."""
        resource = self.store.get("Patient" if persona == "patient" else "Practitioner", user or "")
        if resource is None:
            return None
        name = resource["name"][0]
        return f"{name['family'].title()}, {name['given'][0].title()}"

    def schedule(self, day: date | None = None) -> list[ScheduledVisit]:
        """Appointments on ``day`` (default: the seed's today), live from the store."""
        return appointments_on(self.store, day or self.seed.today, self.tz)

    # -- appointments that change (sandbox-only; see changes.py) ------------------------------

    def reschedule(self, appointment_id: str, start: datetime | str, minutes: int | None = None, *,
                   reason: str | None = None) -> dict[str, Any]:
        """Move an appointment as a scheduler would in Millennium: same id, next version.
        Raises ``changes.ChangeRefused`` (``.status`` 400 / 404 / 409)."""
        when = changes.moment(start, self.tz) if isinstance(start, str) else start
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.tz)
        changed = changes.reschedule(self.store, appointment_id, when, minutes, tz=self.tz,
                                     now=datetime.now(timezone.utc), reason=reason)
        self.record("reschedule", appointment=appointment_id, version=changed["meta"]["versionId"])
        return changed

    def cancel(self, appointment_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """Cancel an appointment as a scheduler would in Millennium: same id, next version."""
        changed = changes.cancel(self.store, appointment_id, now=datetime.now(timezone.utc), reason=reason)
        self.record("cancel", appointment=appointment_id, version=changed["meta"]["versionId"])
        return changed

    def bulk_appointments(self, location: str, count: int, start: datetime | str, *, spread_hours: float = 72.0,
                          video_ratio: float = 0.5, patients: int = 100,
                          location_name: str | None = None) -> changes.BulkResult:
        """``count`` booked appointments (and ``patients`` new patients) at ``location``."""
        when = changes.moment(start, self.tz) if isinstance(start, str) else start
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.tz)
        request = changes.BulkRequest(location=location, count=count, start=when, spread_hours=spread_hours,
                                      video_ratio=video_ratio, patients=patients, location_name=location_name)
        return self.seed_bulk(request)

    def seed_bulk(self, request: changes.BulkRequest) -> changes.BulkResult:
        result = self._bulk.seed(request, datetime.now(timezone.utc))
        self.record("bulk", location=result.location, appointments=len(result.appointment_ids),
                    patients=len(result.patient_ids))
        return result

    def jwks(self) -> dict[str, Any]:
        public = RSAAlgorithm.to_jwk(self.signing_key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.signing_kid, "alg": "RS256", "use": "sig"}]}

    def _require(self, resource_type: str, resource_id: str | None) -> dict[str, Any]:
        found = self.store.get(resource_type, resource_id or "")
        if found is None:
            raise ValueError(f"unknown {resource_type} id {resource_id!r}")
        return found

    # -- audit -----------------------------------------------------------------------------

    def record(self, event: str, **fields: Any) -> None:
        entry = {"at": datetime.now(timezone.utc).isoformat(), "event": event, **fields}
        with self._audit_lock:
            self._audit.append(entry)

    def audit(self, event: str | None = None) -> list[dict[str, Any]]:
        """Recorded events, oldest first: launch, authorize, token, fhir."""
        with self._audit_lock:
            return [e for e in self._audit if event is None or e["event"] == event]


class CernerTenants:
    """The Cerner tenants one sandbox app serves, each its own :class:`CernerSimulator` (seeded
    resources, launches, grants, id_token key, audit) at its own FHIR base ``/r4/{tenant}`` and
    OAuth paths ``/tenants/{tenant}/...``. They share the registered clients and the fault
    switches. The first is the primary: ``app.state.cerner``, and the one ``/_sandbox`` routes act
    on unless they are given ``tenant``."""

    def __init__(self, simulators: Sequence[CernerSimulator]) -> None:
        if not simulators:
            raise ValueError("the sandbox needs at least one tenant")
        self._by_id = {sim.urls.tenant_id: sim for sim in simulators}
        if len(self._by_id) != len(simulators):
            raise ValueError("tenant ids must differ")
        self.primary = simulators[0]

    def get(self, tenant_id: str | None) -> CernerSimulator | None:
        """The tenant's simulator; None for an unknown id."""
        return self._by_id.get(tenant_id or "")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def __iter__(self) -> Iterator[CernerSimulator]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def jwks(self) -> dict[str, Any]:
        """Every tenant's id_token key, as Cerner's one ``/jwk`` publishes the keys of all domains."""
        return {"keys": [key for sim in self for key in sim.jwks()["keys"]]}


def tenant_of(request: Any) -> CernerSimulator | None:
    """The simulator of the tenant a request's path names (its ``{tenant}``); None if unknown."""
    return request.app.state.cerner_tenants.get(request.path_params.get("tenant"))


def chosen_tenant(request: Any, tenant_id: str | None) -> CernerSimulator | None:
    """For ``/_sandbox`` routes: the tenant ``tenant_id`` names (a ``tenant`` parameter), the
    primary when it names none; None for an unknown id."""
    tenants: CernerTenants = request.app.state.cerner_tenants
    return tenants.get(tenant_id) if tenant_id else tenants.primary
