"""JSON Patch (RFC 6902) on Appointment: the operations Cerner documents, answered as documented.

Source: Oracle Health Millennium R4 Appointment, "Patch"
https://fhir.cerner.com/millennium/r4/base/workflow/appointment/#patch (its source is the
cerner/fhir.cerner.com repository: content/millennium/r4/base/workflow/appointment.md and the
operations table lib/resources/r4/appointment_patch.yaml, read at commit 3d33831, 2024-05-02).

What Cerner documents and this module simulates:

- ``replace /status`` along the documented sequences (:data:`TRANSITIONS`);
- the Video Visit links: four operations, sent together, all ``add`` (the first time) or all
  ``replace`` (afterwards)::

      /contained/0/telecom/0/value         the provider link   (URL, at most 255 characters)
      /contained/1/telecom/0/value         the patient link    (URL, at most 255 characters)
      /contained/0/telecom/0/period/start  "applied to both the provider ... and the patient ... link"
      /contained/0/telecom/0/period/end    likewise

  "For Video Visit link patch operation paths, ``contained`` index 0 represents the provider
  link and ``contained`` index 1 represents the patient link." These indexes are Cerner's
  convention, *not* RFC 6901 pointers into the resource as read: Cerner's published reads
  (appointment-read-4817572, and 3005757 before it) list the *Patient* Virtual Meeting Room
  first. The simulator reads them the same way (so does a PATCH that follows the docs), and
  answers reads with the patient room first, as published.

Documented errors, as answered here (besides the If-Match ones in ``fhir.patch``):

- add links to an appointment whose links were already patched: 409 Conflict;
- add and replace mixed in one Video Visit patch: 422;
- any of the four Video Visit operations missing: 422;
- a Video Visit operation on an appointment that is not a Video Visit ("may only be used for
  Cerner Video Visit appointments"; the status code is not documented): 422;
- a link longer than 255 characters (status code not documented): 422;
- a status change outside the sequences: 422 (business-rule).

The simulator's own choices where Cerner documents nothing, each a 422: ``replace`` of links
that were never added, Video Visit operations mixed with other operations, a repeated path,
a period value that is not a dateTime with a zone.

Not simulated, though documented (422 "not simulated"): ``add``/``replace /slot``,
``add /reasonCode``, ``add /cancelationReason``, ``replace /patient-status``,
``add``/``replace /extension``, ``replace /comment``. Everything else is 422 too, ``test``
included: "Only operations on the paths listed below are supported", and ``test`` is not
listed. Optimistic concurrency is If-Match's job (409 when stale), not ``test``'s.

An appointment whose links were never patched is read here without ``contained`` rooms and
without the "Virtual Meeting Room" participants (Cerner does not publish such a read; this
is the simulator's assumption). Patching adds both, shaped like appointment-read-4817572.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import shapes
from .errors import FhirError
from .seed import is_video_visit
from .store import Resource, instant

SOURCE = "https://fhir.cerner.com/millennium/r4/base/workflow/appointment/#patch"

# "When updating an appointment, the resource provides the ability to change the
# Appointment.status in the following sequences" (fhir.cerner.com, Appointment).
TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"booked", "cancelled"}),
    "booked": frozenset({"arrived", "checked-in", "cancelled"}),
    "arrived": frozenset({"checked-in", "cancelled"}),
    "checked-in": frozenset({"fulfilled", "cancelled"}),
}

PROVIDER_LINK = "/contained/0/telecom/0/value"
PATIENT_LINK = "/contained/1/telecom/0/value"
PERIOD_START = "/contained/0/telecom/0/period/start"
PERIOD_END = "/contained/0/telecom/0/period/end"
VIDEO_LINK_PATHS = (PROVIDER_LINK, PATIENT_LINK, PERIOD_START, PERIOD_END)
MAX_LINK_LENGTH = 255  # "The URL length must be less than or equal to 255 characters"

# Documented by Cerner, not simulated here: (op, path).
_NOT_SIMULATED = {("add", "/slot"), ("replace", "/slot"), ("add", "/reasonCode"), ("add", "/cancelationReason"),
                  ("replace", "/patient-status"), ("add", "/extension"), ("replace", "/extension"),
                  ("replace", "/comment")}
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_SUPPORTED = ("'replace' of '/status', or the four Video Visit link operations ('add' or 'replace' of "
              f"{', '.join(repr(p) for p in VIDEO_LINK_PATHS)})")


@dataclass(frozen=True)
class PatchOutcome:
    resource: Resource
    video_links: bool  # the patch set the Video Visit links (the version's second part moves)


def touches_video_links(operations: Any) -> bool:
    """Whether a (parsed) patch body has any Video Visit link operation."""
    return isinstance(operations, list) and any(
        isinstance(o, dict) and o.get("path") in VIDEO_LINK_PATHS for o in operations)


def has_video_links(appointment: Resource) -> bool:
    """Whether the appointment's Video Visit links were patched (both rooms are contained)."""
    return _room(appointment, shapes.PROVIDER_ROOM) is not None and _room(appointment, shapes.PATIENT_ROOM) is not None


def apply_appointment_patch(appointment: Resource, operations: Any) -> PatchOutcome:
    if not isinstance(operations, list) or not operations or not all(isinstance(o, dict) for o in operations):
        raise FhirError(400, "structure", "The body must be a non-empty JSON Patch array of operation objects.")
    for operation in operations:
        op, path = operation.get("op"), operation.get("path")
        if not isinstance(op, str) or not isinstance(path, str):
            raise FhirError(400, "structure", "Every JSON Patch operation needs a string 'op' and 'path'.")
        if op not in ("add", "remove", "replace", "move", "copy", "test"):
            raise FhirError(400, "structure", f"{op!r} is not a JSON Patch operation.")
        if op in ("add", "replace", "test") and "value" not in operation:
            raise FhirError(400, "structure", f"The {op!r} operation on {path!r} needs a 'value'.")
    if touches_video_links(operations):
        return PatchOutcome(_video_links(appointment, operations), video_links=True)
    for operation in operations:
        op, path = operation["op"], operation["path"]
        if (op, path) in _NOT_SIMULATED:
            raise FhirError(422, "not-supported", f"Cerner documents '{op}' of '{path}', but this simulator does "
                                                  f"not simulate it. Supported here: {_SUPPORTED}.")
        if (op, path) != ("replace", "/status"):
            raise FhirError(422, "not-supported", f"Unsupported JSON Patch operation {op!r} on {path!r}: only the "
                                                  f"documented operations are ({SOURCE}). Supported here: "
                                                  f"{_SUPPORTED}.")
    _no_repeated_paths(operations)
    patched = copy.deepcopy(appointment)
    for operation in operations:
        _replace_status(patched, operation["value"])
    return PatchOutcome(patched, video_links=False)


def _no_repeated_paths(operations: list[dict[str, Any]]) -> None:
    paths = [o["path"] for o in operations]
    if len(set(paths)) != len(paths):
        raise FhirError(422, "processing", "Each path may be patched only once per request.")


def _replace_status(appointment: Resource, value: Any) -> None:
    current = appointment["status"]
    allowed = TRANSITIONS.get(current, frozenset())
    if value not in allowed:
        targets = ", ".join(sorted(allowed)) or "none"
        raise FhirError(422, "business-rule",
                        f"Appointment status cannot change from '{current}' to {value!r}. Allowed: {targets}.")
    appointment["status"] = value


# -- Video Visit links ---------------------------------------------------------------------------

def _video_links(appointment: Resource, operations: list[dict[str, Any]]) -> Resource:
    others = [o for o in operations if o["path"] not in VIDEO_LINK_PATHS]
    if others:
        raise FhirError(422, "processing", "Video Visit link operations cannot be combined with other operations "
                                           f"(got {others[0]['op']!r} of {others[0]['path']!r}).")
    ops = {o["op"] for o in operations}
    if not ops <= {"add", "replace"}:
        wrong = sorted(ops - {"add", "replace"})[0]
        raise FhirError(422, "not-supported", f"Unsupported JSON Patch operation {wrong!r} on a Video Visit link "
                                              "path: only 'add' and 'replace' are supported.")
    if len(ops) > 1:
        raise FhirError(422, "processing", "Mixing add and replace patch operations is not supported while "
                                           "patching a Video Visit Appointment.")
    op = ops.pop()
    _no_repeated_paths(operations)
    values = {o["path"]: o["value"] for o in operations}
    missing = [p for p in VIDEO_LINK_PATHS if p not in values]
    if missing:
        raise FhirError(422, "required", f"Patching a Video Visit Appointment needs all four link operations with "
                                         f"op '{op}'; missing: {', '.join(missing)}.")
    if not is_video_visit(appointment):
        raise FhirError(422, "business-rule", "Video Visit link operations may only be used for Cerner Video Visit "
                                              "appointments.")
    for path in (PROVIDER_LINK, PATIENT_LINK):
        link = values[path]
        if not isinstance(link, str) or not link:
            raise FhirError(422, "value", f"The value of {path!r} must be a non-empty URL string.")
        if len(link) > MAX_LINK_LENGTH:
            raise FhirError(422, "value", f"The URL at {path!r} has {len(link)} characters; the URL length must be "
                                          f"less than or equal to {MAX_LINK_LENGTH} characters.")
    for path in (PERIOD_START, PERIOD_END):
        if not isinstance(values[path], str) or not _DATETIME.match(values[path]):
            raise FhirError(422, "value", f"The value of {path!r} must be a dateTime with a time zone, e.g. "
                                          "2019-07-13T08:00:00.000Z.")
    linked = has_video_links(appointment)
    if op == "add" and linked:
        raise FhirError(409, "conflict", "This Video Visit Appointment has previously been patched for Video Visit "
                                         "links: use 'replace' operations.")
    if op == "replace" and not linked:
        raise FhirError(422, "processing", "This Video Visit Appointment has no Video Visit links to replace: use "
                                           "'add' operations.")
    period = {"start": _instant(values[PERIOD_START]), "end": _instant(values[PERIOD_END])}
    patched = copy.deepcopy(appointment)
    if op == "add":
        # As appointment-read-4817572 shows them: patient room first, ids "28" / "31".
        patched["contained"] = [*patched.get("contained", []),
                                _room_resource("28", shapes.PATIENT_ROOM), _room_resource("31", shapes.PROVIDER_ROOM)]
        patched["participant"] = [*patched.get("participant", []),
                                  {"type": [{"text": shapes.PATIENT_ROOM}], "actor": {"reference": "#28"},
                                   "status": "accepted"},
                                  {"type": [{"text": shapes.PROVIDER_ROOM}], "actor": {"reference": "#31"},
                                   "status": "accepted"}]
    for kind, path in ((shapes.PROVIDER_ROOM, PROVIDER_LINK), (shapes.PATIENT_ROOM, PATIENT_LINK)):
        room = _room(patched, kind)
        assert room is not None
        room["telecom"] = [{"system": "url", "value": values[path], "period": dict(period)}]
    return patched


def _room(appointment: Resource, kind: str) -> dict[str, Any] | None:
    return next((c for c in appointment.get("contained", [])
                 if c.get("resourceType") == "HealthcareService"
                 and any(t.get("text") == kind for t in c.get("type", []))), None)


def _room_resource(local_id: str, kind: str) -> dict[str, Any]:
    return {"resourceType": "HealthcareService", "id": local_id, "type": [{"text": kind}], "telecom": []}


def _instant(value: str) -> str:
    """A dateTime as the periods are read back: UTC with milliseconds, like Cerner's."""
    return instant(datetime.fromisoformat(value.replace("Z", "+00:00")))
