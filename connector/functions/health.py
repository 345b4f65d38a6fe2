"""GET /api/health: version, stamp region and storage reachability (no secrets)."""

import azure.functions as func

from connector.composition import container
from connector.functions.http import handles_errors, json_response
from connector.services.health import check_health

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def health(req: func.HttpRequest) -> func.HttpResponse:
    deps = container()
    report = check_health(deps.storage_probe, version=deps.settings.version, region=deps.settings.stamp_region)
    return json_response(report, 200 if report.healthy else 503, headers={"Cache-Control": "no-store"})
