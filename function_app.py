"""The Function App: create it and register the blueprints. Nothing else lives here."""

import azure.functions as func

from connector.functions import health, openapi, provisioning
from connector.functions.admin import endpoints, numbers, tenant

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for module in (health, openapi, tenant, endpoints, numbers, provisioning):
    app.register_functions(module.bp)
