"""Builders for resources shaped like Cerner's published R4 examples.

Shape rules copied from the fixtures (tests/data/fixtures/cerner, from Cerner's published docs), quirks included:

- tenant-local codes live in ``https://fhir.cerner.com/{tenant}/codeSet/{n}`` with
  ``userSelected: true``, next to a standard coding with ``userSelected: false``;
- phone numbers are digits only (``"3125550101"``) with the formatted number in an
  ``iso21090-TEL-address`` extension, and ``rank`` is a *string* (``"1"``) as in
  patient-read-12724067.json (the bulk-export example has an integer: clients must take both);
- instants are UTC with milliseconds (``.000Z``); in-person appointments carry local
  offsets (``-06:00``), video visits UTC, so clients parse both;
- address ``text`` contains a literal backslash-n (``"\\n"``), as published;
- a video visit whose links were patched has two contained HealthcareServices
  ("Patient/Provider Virtual Meeting Room", patient first) referenced from participants as
  ``#28`` / ``#31`` (appointment-read-4817572), and a two-part version id (``1-1``).

Everything built here parses with ``fhir.resources.R4B`` except the one deliberate quirk
documented at :func:`appointment` (``action_comment_quirk``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Any

from .store import Resource, instant

CERNER_EXT = "https://fhir-ehr.cerner.com/r4/StructureDefinition"
TEL_ADDRESS = "http://hl7.org/fhir/StructureDefinition/iso21090-TEL-address"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
VIDEO_VISIT_CODE = "2572307911"  # Cerner's "Video Visit" appointment type (codeSet 14249)
PATIENT_ROOM, PROVIDER_ROOM = "Patient Virtual Meeting Room", "Provider Virtual Meeting Room"


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    last_updated: datetime  # one "last touched" instant for every seeded resource

    def code_set(self, number: int) -> str:
        return f"https://fhir.cerner.com/{self.tenant_id}/codeSet/{number}"

    def coding(self, number: int, code: str, display: str) -> dict[str, Any]:
        return {"system": self.code_set(number), "code": code, "display": display, "userSelected": True}

    def meta(self) -> dict[str, str]:
        return {"versionId": "1", "lastUpdated": instant(self.last_updated)}


def _narrative(title: str, rows: list[tuple[str, str]]) -> dict[str, str]:
    body = "".join(f"<p><b>{escape(k)}</b>: {escape(v)}</p>" for k, v in rows)
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{title}</b></p>{body}</div>'}


def _reference(resource_type: str, resource_id: str, display: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{resource_id}", "display": display}


def phone(entry_id: str, digits: str, use: str, since: datetime) -> dict[str, Any]:
    formatted = f"({digits[:3]}){digits[3:6]}-{digits[6:]}"
    return {
        "id": entry_id,
        "extension": [{"valueUrl": formatted, "url": TEL_ADDRESS}],
        "system": "phone", "value": digits, "use": use,
        "rank": "1",  # Cerner's string rank, see the module docstring
        "period": {"start": instant(since)},
    }


def address(line: str, city: str, state: str, postal_code: str, use: str) -> dict[str, Any]:
    return {
        "use": use,
        "text": f"{line}\\n{city}, {state} {postal_code}\\nUS",  # literal backslash-n, as published
        "line": [line], "city": city, "district": "Cook", "state": state,
        "postalCode": postal_code, "country": "US",
    }


def patient(t: Tenant, *, id: str, family: str, given: str, gender: str, birth_date: date, mrn: str,
            telecom: list[dict[str, Any]], language: tuple[str, str, str], practitioner: tuple[str, str],
            home: dict[str, Any]) -> Resource:
    since = t.last_updated - timedelta(days=400)
    display = f"{family}, {given}"
    cerner_code, bcp47, language_name = language
    return {
        "resourceType": "Patient", "id": id, "meta": t.meta(),
        "text": _narrative("Patient", [("Name", display), ("Status", "Active"),
                                       ("DOB", birth_date.strftime("%b %d, %Y")),
                                       ("Administrative Gender", gender.capitalize())]),
        "identifier": [{
            "id": f"CI-{mrn}-0", "use": "usual",
            "type": {"coding": [t.coding(4, "10", "MRN"),
                                {"system": V2_0203, "code": "MR", "display": "Medical record number",
                                 "userSelected": False}], "text": "MRN"},
            "system": "urn:oid:2.16.840.1.113883.6.1000", "value": mrn,
            "period": {"start": instant(since)},
        }],
        "active": True,
        "name": [{"id": f"CI-{id}-0", "use": "official", "text": display, "family": family,
                  "given": [given], "period": {"start": instant(since)}}],
        "telecom": telecom,
        "gender": gender, "birthDate": birth_date.isoformat(), "deceasedBoolean": False,
        "address": [{**home, "id": f"CI-{id}-A0", "period": {"start": instant(since)}}],
        "communication": [{
            "language": {"coding": [t.coding(36, cerner_code, language_name),
                                    {"system": "urn:ietf:bcp:47", "code": bcp47, "display": language_name,
                                     "userSelected": False}], "text": language_name},
            "preferred": True,
        }],
        "generalPractitioner": [_reference("Practitioner", *practitioner)],
    }


def practitioner(t: Tenant, *, id: str, family: str, given: str, suffix: str, npi: str, gender: str,
                 work_phone: str) -> Resource:
    display = f"{family} {suffix}, {given}"
    since = t.last_updated - timedelta(days=900)
    return {
        "resourceType": "Practitioner", "id": id, "meta": t.meta(),
        "text": _narrative("Practitioner", [("Name", display), ("Identifiers", f"NPI: {npi}"),
                                            ("Gender", gender.capitalize()), ("Status", "Active")]),
        "extension": [{"valueBoolean": suffix == "MD", "url": f"{CERNER_EXT}/is-physician"}],
        "identifier": [{
            "use": "usual",
            "type": {"coding": [{"system": V2_0203, "code": "NPI", "display": "National provider identifier"}],
                     "text": "National Provider Identifier"},
            "system": "http://hl7.org/fhir/sid/us-npi", "value": npi, "period": {"start": instant(since)},
        }],
        "active": True,
        "name": [{"use": "usual", "text": display, "family": family, "given": [given], "suffix": [suffix],
                  "period": {"start": instant(since)}}],
        "telecom": [{"system": "phone", "value": work_phone, "use": "work"}],
        "gender": gender,
    }


def location(t: Tenant, *, id: str, name: str, work_phone: str, home: dict[str, Any]) -> Resource:
    return {
        "resourceType": "Location", "id": id, "meta": t.meta(),
        "text": _narrative("Location", [("Name", name), ("Status", "Active")]),
        "status": "active", "name": name, "mode": "instance",
        "type": [{"coding": [t.coding(222, "772", "Ambulatory(s)")], "text": "Ambulatory(s)"}],
        "telecom": [{"system": "phone", "value": work_phone, "use": "work"}],
        "address": home,
    }


def _participant_type(t: Tenant, code: str, display: str, performer: bool = False) -> list[dict[str, Any]]:
    types: list[dict[str, Any]] = [{"coding": [t.coding(14250, code, display)], "text": display}]
    if performer:
        types.append({"coding": [{"system": PARTICIPATION, "code": "PPRF", "display": "primary performer"}]})
    return types


def _meeting_room(local_id: str, kind: str, url: str, start: str, end: str) -> dict[str, Any]:
    return {"resourceType": "HealthcareService", "id": local_id, "type": [{"text": kind}],
            "telecom": [{"system": "url", "value": url, "period": {"start": start, "end": end}}]}


def appointment(t: Tenant, *, id: str, start: datetime, minutes: int, video: bool, status: str,
                patient: tuple[str, str], practitioner: tuple[str, str], location: tuple[str, str],
                reason: str, action_comment_quirk: bool = False, meeting_links: bool = False) -> Resource:
    """An Appointment as Cerner returns it.

    ``meeting_links`` (video visits only): the Video Visit links were already patched, so the
    contained meeting rooms are there and the version has Cerner's second part (``1-1``, as
    appointment-read-4817572's ``2-1``). Without it a video visit waits for its links: no
    rooms (see :mod:`.patch`).

    ``action_comment_quirk`` reproduces appointment-read-4822366: an ``action-comment``
    extension with ``valueString: ""``. R4B rejects it (a FHIR string must not be empty),
    and it is kept on purpose, on one cancelled appointment only, so that the connector's
    FHIR adapter meets the artefact here before it meets it in production.
    """
    end = start + timedelta(minutes=minutes)
    # Video visits in UTC with milliseconds, in-person ones with the clinic's offset.
    fmt = instant if video else (lambda moment: moment.isoformat(timespec="seconds"))
    service = "Video Visit" if video else "Office Visit"
    service_code = VIDEO_VISIT_CODE if video else "2572307905"
    extension = [{"valueBoolean": status in ("proposed", "booked"), "url": f"{CERNER_EXT}/is-cancelable"},
                 {"valueBoolean": status in ("proposed", "booked"), "url": f"{CERNER_EXT}/is-reschedulable"}]
    if action_comment_quirk:
        extension.insert(0, {"valueString": "", "url": f"{CERNER_EXT}/action-comment"})
    resource: Resource = {
        "resourceType": "Appointment", "id": id, "meta": t.meta(),
        "text": appointment_text(status=status, video=video, start=fmt(start), end=fmt(end)),
        "extension": extension,
        "status": status,
        "serviceType": [{"coding": [t.coding(14249, service_code, service)], "text": service}],
        "reasonCode": [{"text": reason}],
        "description": service,
        "start": fmt(start), "end": fmt(end), "minutesDuration": minutes,
        "participant": [
            {"type": _participant_type(t, "4572", "Patient"), "actor": _reference("Patient", *patient),
             "required": "required", "status": "accepted"},
            {"type": _participant_type(t, "4574", "Resource", performer=True),
             "actor": _reference("Practitioner", *practitioner), "required": "required", "status": "accepted"},
            {"actor": _reference("Location", *location), "required": "required", "status": "accepted"},
        ],
        "requestedPeriod": [{"start": fmt(start), "end": fmt(end)}],
    }
    if status == "cancelled":
        resource["cancelationReason"] = {
            "coding": [t.coding(14229, "2191414701", "Scheduled by mistake"),
                       {"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                        "code": "oth-err", "display": "Other: Error", "userSelected": False}],
            "text": "Scheduled by mistake",
        }
    if video and meeting_links:
        resource["meta"]["versionId"] += "-1"
        room = f"https://vv.example.org/rooms/{id}"  # example.org: reserved, never resolves to a real service
        window = (instant(start), instant(end))
        resource["contained"] = [_meeting_room("28", PATIENT_ROOM, f"{room}/patient", *window),
                                 _meeting_room("31", PROVIDER_ROOM, f"{room}/provider", *window)]
        resource["participant"] += [
            {"type": [{"text": PATIENT_ROOM}], "actor": {"reference": "#28"}, "status": "accepted"},
            {"type": [{"text": PROVIDER_ROOM}], "actor": {"reference": "#31"}, "status": "accepted"},
        ]
    return resource


def appointment_text(*, status: str, video: bool, start: str, end: str) -> dict[str, str]:
    """The Appointment's generated narrative (rebuilt when the sandbox reschedules or cancels it)."""
    service = "Video Visit" if video else "Office Visit"
    return _narrative("Appointment", [("Status", status.capitalize()), ("Service Type", service),
                                      ("Start", start), ("End", end), ("Video Visit", "Yes" if video else "No")])


def encounter(t: Tenant, *, id: str, fin: str, status: str, start: datetime, minutes: int,
              patient: tuple[str, str], practitioner: tuple[str, str], location: tuple[str, str],
              appointment_id: str) -> Resource:
    period: dict[str, str] = {"start": instant(start)}
    if status == "finished":
        period["end"] = instant(start + timedelta(minutes=minutes))
    return {
        "resourceType": "Encounter", "id": id, "meta": t.meta(),
        "text": _narrative("Encounter", [("Patient", patient[1]), ("Location", location[1]),
                                         ("Type", "Outpatient"), ("Status", status.capitalize())]),
        "identifier": [{
            "use": "usual",
            "type": {"coding": [t.coding(319, "1077", "FIN NBR"),
                                {"system": V2_0203, "code": "AN", "display": "Account number",
                                 "userSelected": False}], "text": "FIN NBR"},
            "_system": {"extension": [{"url": DATA_ABSENT, "valueCode": "unknown"}]},
            "value": fin,
        }],
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                  "display": "ambulatory", "userSelected": False},
        "type": [{"coding": [t.coding(71, "309309", "Outpatient"),
                             {"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": "O",
                              "display": "Outpatient", "userSelected": False}], "text": "Outpatient"}],
        "subject": _reference("Patient", *patient),
        "participant": [{
            "type": [{"coding": [t.coding(333, "1119", "Attending Physician"),
                                 {"system": PARTICIPATION, "code": "ATND", "display": "attender",
                                  "userSelected": False}], "text": "Attending Physician"}],
            "individual": _reference("Practitioner", *practitioner),
        }],
        "appointment": [{"reference": f"Appointment/{appointment_id}"}],
        "period": period,
        "location": [{"location": _reference("Location", *location),
                      "status": "completed" if status == "finished" else "planned"}],
    }
