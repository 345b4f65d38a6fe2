"""Write the visit's links into Cerner's video-visit Appointment, so PowerChart shows them.

What Oracle Health documents (fhir.cerner.com/millennium/r4/base/workflow/appointment/,
"Patch"): four operations, all ``add`` (first time) or all ``replace`` (after), on
``/contained/0/telecom/0/value`` (the provider link), ``/contained/1/telecom/0/value`` (the
patient link) and ``/contained/0/telecom/0/period/start|end`` (applied to both links), with
``If-Match`` and ``Content-Type: application/json-patch+json``, each URL at most 255
characters. The indexes are Cerner's convention, not positions in what a read returns (its
published reads list the patient room first), and ``test`` is not a supported operation: the
ETag in If-Match is the concurrency guard.

Both links are the connector's own short ``/api/j/`` links (a raw Teams join URL can exceed 255
characters): the patient's opens the patient page, the provider's redirects to Teams. Failing
to write back never fails the launch: it is logged (ids and error class only) and tried again
at the next launch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from connector.domain.endpoint import FhirEndpoint
from connector.domain.visit import LinkAudience, Visit
from connector.errors import ConnectorError
from connector.services import fhir_context
from connector.services.ports import FhirReader

log = logging.getLogger("connector.writeback")

PROVIDER_ROOM = "Provider Virtual Meeting Room"
PATIENT_ROOM = "Patient Virtual Meeting Room"
MAX_LINK_LENGTH = 255
PROVIDER_LINK_PATH = "/contained/0/telecom/0/value"
PATIENT_LINK_PATH = "/contained/1/telecom/0/value"
PERIOD_START_PATH = "/contained/0/telecom/0/period/start"
PERIOD_END_PATH = "/contained/0/telecom/0/period/end"


class VideoLinkPatchError(ValueError):
    """The appointment or the links cannot make a patch Cerner accepts."""


def video_link_patch(appointment: Mapping[str, Any], provider_url: str, patient_url: str, *,
                     start: str | None = None, end: str | None = None) -> list[dict[str, str]]:
    """``add`` operations when the appointment has no meeting rooms yet, ``replace`` when it has;
    [] when the links and period are already those. The period defaults to the appointment's."""
    if appointment.get("resourceType") != "Appointment":
        raise VideoLinkPatchError("not an Appointment")
    for name, url in (("provider link", provider_url), ("patient link", patient_url)):
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise VideoLinkPatchError(f"the {name} must be an absolute http(s) URL")
        if len(url) > MAX_LINK_LENGTH:
            raise VideoLinkPatchError(f"the {name} has {len(url)} characters; Cerner takes at most {MAX_LINK_LENGTH}")
    period_start = _instant(start or appointment.get("start"), "start")
    period_end = _instant(end or appointment.get("end"), "end")
    rooms = {kind: _room(appointment, kind) for kind in (PROVIDER_ROOM, PATIENT_ROOM)}
    if (rooms[PROVIDER_ROOM] is None) != (rooms[PATIENT_ROOM] is None):
        raise VideoLinkPatchError("the appointment has only one of the two virtual meeting rooms")
    wanted = {PROVIDER_ROOM: provider_url, PATIENT_ROOM: patient_url}
    if rooms[PROVIDER_ROOM] is not None and all(
            _telecom(rooms[kind]) == (wanted[kind], period_start, period_end) for kind in wanted):
        return []
    op = "replace" if rooms[PROVIDER_ROOM] is not None else "add"
    return [
        {"op": op, "path": PROVIDER_LINK_PATH, "value": provider_url},
        {"op": op, "path": PATIENT_LINK_PATH, "value": patient_url},
        {"op": op, "path": PERIOD_START_PATH, "value": period_start},
        {"op": op, "path": PERIOD_END_PATH, "value": period_end},
    ]


def write_back_links(fhir: FhirReader, links, endpoint: FhirEndpoint, access_token: str, visit: Visit, *,
                     appointment=None, etag: str | None = None) -> bool:
    """Patch the appointment's video-visit links; True when they are in place. ``appointment`` and
    its ``etag``, when the caller has just read them, save reading them again."""
    try:
        if appointment is None or not etag:
            appointment, etag = fhir.read_versioned(endpoint.base_url, access_token, "Appointment",
                                                    visit.appointment_id)
        if not fhir_context.is_video_visit(appointment):
            return True  # Cerner takes these links on video visits only; nothing to write
        if not etag:
            log.warning("write-back skipped for endpoint %s: the EHR sent no ETag", endpoint.endpoint_id)
            return False
        operations = video_link_patch(
            json.loads(appointment.model_dump_json()),
            provider_url=links.mint(visit, audience=LinkAudience.provider),
            patient_url=links.mint(visit))
        if operations:
            fhir.patch(endpoint.base_url, access_token, "Appointment", visit.appointment_id, operations,
                       if_match=etag)
    except (ConnectorError, VideoLinkPatchError) as exc:
        log.warning("write-back failed for endpoint %s: %s", endpoint.endpoint_id, type(exc).__name__)
        return False
    log.info("visit links written back for endpoint %s", endpoint.endpoint_id)
    return True


def _room(appointment: Mapping[str, Any], kind: str):
    return next((c for c in appointment.get("contained") or []
                 if c.get("resourceType") == "HealthcareService"
                 and any(t.get("text") == kind for t in c.get("type") or [])), None)


def _telecom(room: Mapping[str, Any]):
    telecom = (room.get("telecom") or [{}])[0]
    period = telecom.get("period") or {}
    starts, ends = period.get("start"), period.get("end")
    return (telecom.get("value"), _instant(starts, "start") if starts else None,
            _instant(ends, "end") if ends else None)


def _instant(value: Any, name: str) -> str:
    """A FHIR instant as Cerner writes them: UTC with milliseconds (2019-07-13T08:00:00.000Z)."""
    if not isinstance(value, str):
        raise VideoLinkPatchError(f"the appointment has no {name}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise VideoLinkPatchError(f"the appointment's {name} is not a dateTime") from None
    if moment.tzinfo is None:
        raise VideoLinkPatchError(f"the appointment's {name} has no time zone")
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
