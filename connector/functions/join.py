"""``GET /api/j/{token}``: the patient's page for one visit (from the SMS link or the portal)."""

import azure.functions as func

from connector.composition import container
from connector.domain import patient_messages
from connector.functions.http import handles_errors_as_pages, html_response, redirect
from connector.pages.patient import expired_page, join_page, unknown_page

bp = func.Blueprint()


@bp.route(route="j/{token}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors_as_pages
def patient_join(req: func.HttpRequest) -> func.HttpResponse:
    from connector.domain.visit import LinkAudience

    deps = container()
    language = patient_messages.language_or_default(
        req.params.get("hl") or patient_messages.from_accept_language(req.headers.get("Accept-Language")))
    landing = deps.patient_links.landing(req.route_params.get("token", ""))
    if landing.visit is not None and landing.audience is LinkAudience.provider:
        return redirect(landing.visit.join_web_url)  # the EHR's provider link: straight into Teams
    if landing.visit is not None:
        return html_response(join_page(landing, language, deps.clock.now()))
    if landing.expired:
        return html_response(expired_page(landing, language), 410)
    return html_response(unknown_page(language), 404)
