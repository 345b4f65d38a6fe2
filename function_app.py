"""The Function App: create it and register the blueprints. Nothing else lives here."""

import azure.functions as func

from connector.functions import (
    acs_events, graph_webhook, health, join, jwks, launch, methods, openapi, provisioning, reminders, retention,
    visit,
)
from connector.functions.admin import endpoints, numbers, tenant
from connector.functions.admin import reminders as admin_reminders

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for module in (health, openapi, tenant, endpoints, numbers, provisioning, launch, visit, join, graph_webhook, jwks,
               reminders, admin_reminders, acs_events, retention, methods):  # methods: 405 + Allow for the rest
    app.register_functions(module.bp)
