"""SMART launches: ``/api/launch/provider`` (PowerChart), ``/api/launch/patient`` (the patient
portal) and their shared ``/api/launch/callback``.

The whole flow stays in one window (PowerChart's embedded browser shares no cookies with
pop-ups): redirect to the EHR's authorize endpoint, back to the callback, then 303 to the
visit page (the provider, with its sealed session cookie) or to the patient's join page.
"""

import azure.functions as func

from connector.composition import container
from connector.domain.launch import SESSION_TTL, Persona
from connector.functions.http import handles_errors_as_pages, redirect
from connector.functions.visit_session import session_cookie

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.route(route="launch/provider", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def launch_provider(req: func.HttpRequest) -> func.HttpResponse:
    return redirect(container().smart_launch.begin(Persona.provider, iss=req.params.get("iss"),
                                                   launch=req.params.get("launch")))


@bp.route(route="launch/patient", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def launch_patient(req: func.HttpRequest) -> func.HttpResponse:
    return redirect(container().smart_launch.begin(Persona.patient, iss=req.params.get("iss"),
                                                   launch=req.params.get("launch")))


@bp.route(route="launch/callback", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def launch_callback(req: func.HttpRequest) -> func.HttpResponse:
    deps = container()
    signed_in = deps.smart_launch.complete(
        state=req.params.get("state"), code=req.params.get("code"), error=req.params.get("error"),
        error_description=req.params.get("error_description"))
    if signed_in.persona is Persona.patient:
        return redirect(deps.patient_visit.open(signed_in), 303)
    session = deps.provider_visit.open(signed_in)
    path = f"/api/visit/{session.session_id}"
    cookie = session_cookie(deps.session_sealer.seal(session), path, max_age=int(SESSION_TTL.total_seconds()))
    return redirect(path, 303, headers={"Set-Cookie": cookie})
