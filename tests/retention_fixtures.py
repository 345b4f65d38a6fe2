"""Rows of the tables the retention pass reads, built around a fixed instant (unit and Azurite tests)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from connector.domain.launch import LaunchState, Persona
from connector.domain.notification import NotificationClaim, NotificationKind, NotificationStatus
from connector.domain.visit import JoinLink, SubscriptionLink, Visit

NOW = datetime(2026, 12, 3, 3, 17, tzinfo=timezone.utc)
TID, EID = "72f988bf-86f1-41af-91ab-2d7cd011db47", "cardiology"
EHR_USER = "12742069"


def launch_state(n: int, expires_at: datetime) -> LaunchState:
    return LaunchState(state=f"{n:043d}", tenant_id=TID, endpoint_id=EID, persona=Persona.provider, client_id="c",
                       code_verifier="v" * 43, nonce="n", created_at=expires_at - timedelta(minutes=10),
                       expires_at=expires_at)


def join_link(n: int, expires_at: datetime) -> JoinLink:
    return JoinLink(token_hash=hashlib.sha256(str(n).encode()).hexdigest(), tenant_id=TID, endpoint_id=EID,
                    appointment_id=f"a{n}", created_at=expires_at - timedelta(hours=3), expires_at=expires_at)


def subscription(n: int, expires_at: datetime) -> SubscriptionLink:
    return SubscriptionLink(subscription_id=f"sub-{n}", tenant_id=TID, endpoint_id=EID, appointment_id=f"a{n}",
                            client_state_hash="0" * 64, expires_at=expires_at)


def visit(appointment_id: str, end: datetime, updated_at: datetime | None = None, **extra) -> Visit:
    return Visit(tenant_id=TID, endpoint_id=EID, appointment_id=appointment_id, meeting_id="m", join_web_url="https://t",
                 organizer_user_id="o", ehr_user_id=EHR_USER, appointment_start=end - timedelta(minutes=30),
                 appointment_end=end, created_at=end - timedelta(days=1), updated_at=updated_at or end, **extra)


def notification(appointment_id: str, start: datetime, **extra) -> NotificationClaim:
    return NotificationClaim(tenant_id=TID, endpoint_id=EID, appointment_id=appointment_id,
                             kind=NotificationKind.reminder, offset_minutes=60, appointment_start=start,
                             claimed_at=start - timedelta(days=2), status=NotificationStatus.sent, **extra)
