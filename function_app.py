"""The Function App: create it and register the blueprints. Nothing else lives here."""

import azure.functions as func

from connector.functions.health import bp as health

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health)
