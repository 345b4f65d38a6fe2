"""SMART v1 scopes as Cerner advertises them, and the checks the simulator makes with them.

Cerner speaks SMART v1 only (``patient/Appointment.read``), never v2 (``.rs``, ``.cruds``):
an app asking for a v2 scope gets ``invalid_scope``, which is the point of simulating it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ALL = ("user", "patient", "system")
NO_PATIENT = ("user", "system")

# (resource type, contexts with .read, contexts with .write), in Cerner's published order.
# Rebuilt from metadata's scopes_supported (fixture smart-configuration.json); a unit test
# compares the result with the fixture list item by item.
_CERNER_RESOURCE_SCOPES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Account", ALL, ()),
    ("AllergyIntolerance", ALL, ALL),
    ("Appointment", ALL, ALL),
    ("Basic", (), ALL),
    ("Binary", ALL, ()),
    ("CarePlan", ALL, ()),
    ("CareTeam", ALL, ()),
    ("ChargeItem", ALL, ALL),
    ("Communication", ALL, ALL),
    ("Condition", ALL, ALL),
    ("Consent", ALL, ()),
    ("Coverage", ALL, ALL),
    ("Device", ALL, ()),
    ("DiagnosticReport", ALL, ()),
    ("DocumentReference", ALL, ALL),
    ("Encounter", ALL, ALL),
    ("FamilyMemberHistory", ALL, ALL),
    ("Goal", ALL, ()),
    ("Immunization", ALL, ALL),
    ("InsurancePlan", ALL, ()),
    ("Location", NO_PATIENT, ()),
    ("MedicationAdministration", ALL, ()),
    ("MedicationRequest", ALL, ALL),
    ("NutritionOrder", ALL, ()),
    ("Observation", ALL, ALL),
    ("Organization", NO_PATIENT, NO_PATIENT),
    ("Patient", ALL, ALL),
    ("Person", ALL, ()),
    ("Practitioner", NO_PATIENT, NO_PATIENT),
    ("Procedure", ALL, ALL),
    ("Provenance", ALL, ALL),
    ("Questionnaire", ALL, ()),
    ("QuestionnaireResponse", ALL, ALL),
    ("RelatedPerson", ALL, ALL),
    ("Schedule", ALL, ()),
    ("ServiceRequest", ALL, ()),
    ("Slot", ALL, ALL),
)

IDENTITY_SCOPES = ("launch", "profile", "fhirUser", "openid", "online_access", "offline_access")


def _cerner_scopes_supported() -> tuple[str, ...]:
    scopes: list[str] = list(IDENTITY_SCOPES)
    for resource_type, read, write in _CERNER_RESOURCE_SCOPES:
        scopes += [f"{context}/{resource_type}.read" for context in read]
        scopes += [f"{context}/{resource_type}.write" for context in write]
    scopes.append("system/FinancialTransaction.write")
    return tuple(scopes)


# What smart-configuration publishes, exactly as Cerner does.
SCOPES_SUPPORTED: tuple[str, ...] = _cerner_scopes_supported()

# What authorize / token accept. Adds the standalone-launch context requests of SMART v1
# (Cerner accepts them although its list omits them) and the v1 wildcards.
_ACCEPTED = frozenset(SCOPES_SUPPORTED) | {"launch/patient", "launch/encounter"}
_WILDCARD = re.compile(r"^(patient|user|system)/\*\.(read|write)$")
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Za-z]+)\.(read|write|\*)$")


def parse(scope: str | None) -> list[str]:
    """Space-delimited scope string -> ordered unique scopes (RFC 6749 section 3.3)."""
    seen: dict[str, None] = {}
    for item in (scope or "").split(" "):
        if item:
            seen.setdefault(item, None)
    return list(seen)


def unknown(scopes: Iterable[str]) -> list[str]:
    """Scopes this server does not know (v2 syntax, typos, other vendors' extensions)."""
    return [s for s in scopes if s not in _ACCEPTED and not _WILDCARD.match(s)]


def grantable(requested: Iterable[str], registered: frozenset[str] | None) -> list[str]:
    """Requested scopes the client was registered for (all of them when unrestricted)."""
    return [s for s in requested if registered is None or s in registered]


def covers(scopes: Iterable[str], resource_type: str, access: str) -> bool:
    """Whether any ``context/Type.access`` scope (or a wildcard) allows the interaction."""
    for scope in scopes:
        match = _RESOURCE_SCOPE.match(scope)
        if match and match.group(2) in ("*", resource_type) and match.group(3) in ("*", access):
            return True
    return False


def has_context(scopes: Iterable[str], context: str) -> bool:
    """Whether any resource scope uses ``context`` (``patient``, ``user`` or ``system``)."""
    return any(s.startswith(f"{context}/") for s in scopes)
