"""SMART launches: ``/api/launch/provider`` (PowerChart), ``/api/launch/patient`` (the patient
portal) and their shared ``/api/launch/callback``.

The whole flow stays in one window (PowerChart's embedded browser shares no cookies with
pop-ups): redirect to the EHR's authorize endpoint, back to the callback, then 303 to the
visit page (the provider, with its sealed session cookie) or to the patient's join page.

The launch also leaves a cookie in that window (``vv_launch_<id>``, only sent to the callback,
ten minutes): the callback must come back to the browser that started the launch, so a
callback URL sent to someone else (login CSRF) opens nothing.
"""

import secrets

import azure.functions as func

from connector import telemetry
from connector.composition import container
from connector.domain.launch import SESSION_TTL, STATE_TTL, Persona
from connector.functions.http import handles_errors_as_pages, redirect
from connector.functions.visit_session import request_cookies, session_cookie

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS
CALLBACK_PATH = "/api/launch/callback"
LAUNCH_COOKIE = "vv_launch_"


def _begin(req: func.HttpRequest, persona: Persona) -> func.HttpResponse:
    binding = secrets.token_urlsafe(32)
    location = container().smart_launch.begin(persona, iss=req.params.get("iss"), launch=req.params.get("launch"),
                                              browser_binding=binding)
    # One cookie per launch (named after a random id), so launches side by side do not collide.
    cookie = (f"{LAUNCH_COOKIE}{secrets.token_hex(6)}={binding}; Path={CALLBACK_PATH}; "
              f"Max-Age={int(STATE_TTL.total_seconds())}; HttpOnly; Secure; SameSite=Lax")
    return redirect(location, headers={"Set-Cookie": cookie})


@bp.route(route="launch/provider", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def launch_provider(req: func.HttpRequest) -> func.HttpResponse:
    return _begin(req, Persona.provider)


@bp.route(route="launch/patient", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def launch_patient(req: func.HttpRequest) -> func.HttpResponse:
    return _begin(req, Persona.patient)


@bp.route(route="launch/callback", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def launch_callback(req: func.HttpRequest) -> func.HttpResponse:
    deps = container()
    bindings = tuple(value for name, values in request_cookies(req).items() if name.startswith(LAUNCH_COOKIE)
                     for value in values)
    signed_in = deps.smart_launch.complete(
        state=req.params.get("state"), code=req.params.get("code"), error=req.params.get("error"),
        browser_bindings=bindings)
    telemetry.tag(tenant=signed_in.endpoint.tenant_id, endpoint_id=signed_in.endpoint.endpoint_id)
    if signed_in.persona is Persona.patient:
        return redirect(deps.patient_visit.open(signed_in), 303)
    session = deps.provider_visit.open(signed_in)
    path = f"/api/visit/{session.session_id}"
    cookie = session_cookie(deps.session_sealer.seal(session), path, max_age=int(SESSION_TTL.total_seconds()))
    return redirect(path, 303, headers={"Set-Cookie": cookie})
