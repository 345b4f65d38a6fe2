"""The Function App: create it and register the blueprints. Nothing else lives here."""

import azure.functions as func

from connector.functions import graph_webhook, health, join, jwks, launch, openapi, provisioning, visit
from connector.functions.admin import endpoints, numbers, tenant

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for module in (health, openapi, tenant, endpoints, numbers, provisioning, launch, visit, join, graph_webhook, jwks):
    app.register_functions(module.bp)
