"""Patient links: ``/api/j/{token}`` -> one visit, and the SMS that carries one.

    link = links.mint(visit)                         # a new opaque token; only its hash is stored
    sent = links.send(endpoint, visit, patient)      # SMS from the endpoint's linked number
    landing = links.landing(token, now)              # what the patient's page shows

A token is 24 random bytes (192 bits, base64url: 32 characters); the table keeps its SHA-256,
so a copy of the table opens no visit. A link works until two hours after the appointment
ends. The patient's mobile number is read from FHIR when the message is sent and is never
stored or logged; a message goes out only with both SMS consents and a linked number.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fhir.resources.R4B.patient import Patient

from connector.services.telecom import mobile_phone_e164
from connector.domain import patient_messages
from connector.domain.endpoint import FhirEndpoint
from connector.domain.visit import JOIN_TOKEN_BYTES, JOIN_TOKEN_PATTERN, JoinLink, LinkAudience, Visit, token_hash
from connector.errors import Conflict, UnprocessableInput
from connector.services import fhir_context
from connector.services.ports import (
    Clock, EndpointRepository, IdSource, JoinLinkRepository, SmsSender, TenantRepository, VisitRepository,
)

log = logging.getLogger("connector.links")

_TOKEN = re.compile(JOIN_TOKEN_PATTERN)
NO_CONSENT = "SMS is not switched on for this organisation (an administrator must give both SMS consents)."
NO_NUMBER = "No SMS number is linked to this clinic's FHIR endpoint yet (an administrator can link one)."


@dataclass(frozen=True)
class LinkSent:
    sent_at: datetime
    to_last_digits: str  # shown to the clinician ("••• 0103"); the number itself goes nowhere
    language: str


@dataclass(frozen=True)
class Landing:
    """The patient page: ``visit`` None means unknown (404); ``expired`` a known, spent link."""

    visit: Visit | None
    clinic: str = ""
    timezone: str = "UTC"
    expired: bool = False
    audience: LinkAudience = LinkAudience.patient


class PatientLinks:
    def __init__(self, links: JoinLinkRepository, visits: VisitRepository, endpoints: EndpointRepository,
                 tenants: TenantRepository, sms: SmsSender, clock: Clock, ids: IdSource, *, public_base_url: str):
        self._links = links
        self._visits = visits
        self._endpoints = endpoints
        self._tenants = tenants
        self._sms = sms
        self._clock = clock
        self._ids = ids
        self._base = public_base_url.rstrip("/")

    def mint(self, visit: Visit, language: str | None = None, *,
             audience: LinkAudience = LinkAudience.patient, token: str | None = None) -> str:
        """A link to ``visit`` (kept under 255 characters: SMS and EHR fields): a new random token,
        or the given ``token`` (a message's retries must carry the same link: the same text)."""
        token = token or self._ids.token(JOIN_TOKEN_BYTES)
        now = self._clock.now()
        try:
            self._links.add_link(JoinLink(
                token_hash=token_hash(token), audience=audience, tenant_id=visit.tenant_id,
                endpoint_id=visit.endpoint_id, appointment_id=visit.appointment_id, created_at=now,
                expires_at=visit.link_expires_at))
        except Conflict:
            pass  # the same token again: its row is there
        suffix = f"?hl={language}" if language and language != patient_messages.DEFAULT_LANGUAGE else ""
        return f"{self._base}/api/j/{token}{suffix}"

    def unavailable_reason(self, endpoint: FhirEndpoint) -> str:
        """Why no link can be texted from this endpoint now ("" when one can)."""
        tenant = self._tenants.get_tenant(endpoint.tenant_id)
        if tenant is None or not tenant.item.sms_allowed:
            return NO_CONSENT
        if not endpoint.linked_number:
            return NO_NUMBER
        return ""

    def send(self, endpoint: FhirEndpoint, visit: Visit, patient: Patient) -> LinkSent:
        reason = self.unavailable_reason(endpoint)  # read now: a withdrawn consent stops at once
        if reason:
            raise UnprocessableInput(reason)
        # Cerner stores national digits; read as NANP (US and Canada, the only countries whose
        # toll-free numbers ACS sells for SMS). Other countries come with the reminders work.
        country = "US"
        number = mobile_phone_e164(patient, country, now=self._clock.now())
        if number is None:
            raise UnprocessableInput("The patient's chart has no mobile number that can receive a text.")
        language = patient_messages.language_or_default(fhir_context.preferred_language(patient))
        zone = ZoneInfo(endpoint.timezone)
        now = self._clock.now()
        text = patient_messages.link_sms(
            language, clinic=endpoint.display_name or "Your clinic", start=visit.appointment_start.astimezone(zone),
            today=now.astimezone(zone).date(), link=self.mint(visit, language))
        message_id = self._sms.send(from_number=endpoint.linked_number, to_number=number, message=text,
                                    repeatability_id=str(uuid.uuid4()), first_sent=now, tag="visit-link")
        log.info("visit link texted for endpoint %s (ACS message %s)", endpoint.endpoint_id, message_id)
        return LinkSent(sent_at=now, to_last_digits=number[-4:], language=language)

    def landing(self, token: str) -> Landing:
        if not _TOKEN.fullmatch(token or ""):
            return Landing(visit=None)
        link = self._links.find_link(token)
        if link is None:
            return Landing(visit=None)
        endpoint = self._endpoints.get_endpoint(link.tenant_id, link.endpoint_id)
        clinic = (endpoint.item.display_name if endpoint else "") or "your clinic"
        zone = endpoint.item.timezone if endpoint else "UTC"
        stored = self._visits.get_visit(link.tenant_id, link.endpoint_id, link.appointment_id)
        if stored is None or self._clock.now() >= link.expires_at:
            return Landing(visit=None, clinic=clinic, timezone=zone, expired=True)
        return Landing(visit=stored.item, clinic=clinic, timezone=zone, audience=link.audience)
