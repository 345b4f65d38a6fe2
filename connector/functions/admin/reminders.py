"""Reminder policy per endpoint (If-Match like endpoints), a preview of every message, failed
messages and their replay."""

from datetime import datetime

import azure.functions as func
from pydantic import BaseModel, ConfigDict

from connector.composition import container
from connector.domain.notification import NotificationClaim, NotificationRef
from connector.domain.reminders import ReminderPolicy
from connector.functions.admin.common import admin_principal
from connector.functions.http import handles_errors, json_response, parse_body

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


class PolicyView(BaseModel):
    endpoint_id: str
    policy: ReminderPolicy
    location_ids: list[str]
    timezone: str
    etag: str


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: datetime | None = None


class PreviewMessageView(BaseModel):
    kind: str
    language: str
    text: str
    segments: int


class PreviewView(BaseModel):
    messages: list[PreviewMessageView]


class NotificationView(BaseModel):
    """A message as the admin sees it: ids, times and outcomes; never a number or a text."""

    ref: NotificationRef
    status: str
    claimed_at: datetime
    due_at: datetime | None
    attempts: int
    failure: str | None
    replays: int

    @classmethod
    def of(cls, claim: NotificationClaim) -> "NotificationView":
        return cls(ref=NotificationRef.of(claim), status=claim.status.value, claimed_at=claim.claimed_at,
                   due_at=claim.due_at, attempts=claim.attempts, failure=claim.failure, replays=claim.replays)


class NotificationList(BaseModel):
    notifications: list[NotificationView]


def _policy_response(stored) -> func.HttpResponse:
    endpoint = stored.item
    view = PolicyView(endpoint_id=endpoint.endpoint_id, policy=endpoint.reminder_policy,
                      location_ids=endpoint.location_ids, timezone=endpoint.timezone, etag=stored.etag)
    return json_response(view, headers={"ETag": stored.etag})


@bp.route(route="admin/endpoints/{endpoint_id}/reminder-policy", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def get_reminder_policy(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    return _policy_response(container().reminder_admin.policy(principal.tenant_id, req.route_params["endpoint_id"]))


@bp.route(route="admin/endpoints/{endpoint_id}/reminder-policy", methods=["PUT"], auth_level=ANONYMOUS)
@handles_errors
def put_reminder_policy(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    policy = parse_body(req, ReminderPolicy)
    stored = container().reminder_admin.set_policy(principal.tenant_id, req.route_params["endpoint_id"], policy,
                                                   req.headers.get("If-Match"))
    return _policy_response(stored)


@bp.route(route="admin/endpoints/{endpoint_id}/reminder-policy/preview", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors
def preview_reminders(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    body = parse_body(req, PreviewRequest)
    messages = container().reminder_admin.preview(principal.tenant_id, req.route_params["endpoint_id"],
                                                  start=body.start)
    return json_response(PreviewView(messages=[PreviewMessageView(**m.__dict__) for m in messages]))


@bp.route(route="admin/notifications/failed", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def list_failed_notifications(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    failed = container().reminder_admin.failed(principal.tenant_id)
    return json_response(NotificationList(notifications=[NotificationView.of(c) for c in failed]))


@bp.route(route="admin/notifications/replay", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors
def replay_notification(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    ref = parse_body(req, NotificationRef)
    replayed = container().reminder_admin.replay(principal.tenant_id, ref)
    return json_response(NotificationView.of(replayed), 202)
