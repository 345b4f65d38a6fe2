"""``GET /api/.well-known/jwks.json``: the public half of the stamp's client assertion key.

Cerner's code console holds this URL for the connector's confidential apps (private_key_jwt),
and fetches the keys when it verifies an assertion. An empty set when no key is configured.
"""

import azure.functions as func

from connector.composition import container
from connector.functions.http import handles_errors, json_response

bp = func.Blueprint()


@bp.route(route=".well-known/jwks.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def jwks(req: func.HttpRequest) -> func.HttpResponse:
    signer = container().client_assertions
    return json_response(signer.jwks() if signer else {"keys": []},
                         headers={"Cache-Control": "public, max-age=300"})
