"""HTTP triggers covering routes, constraints, methods, errors, async and app settings."""

from __future__ import annotations

import asyncio
import json
import os

import azure.functions as func


def build_app() -> tuple[func.FunctionApp, list[func.HttpRequest]]:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    calls: list[func.HttpRequest] = []

    # A non-default binding name: the host must call the function by that keyword.
    @app.route(route="items/{id:int}", methods=["GET", "POST"], trigger_arg_name="request")
    def echo_item(request: func.HttpRequest) -> func.HttpResponse:
        calls.append(request)
        echoed = {
            "method": request.method,
            "url": request.url,
            "params": dict(request.params),
            "route_params": dict(request.route_params),
            "x_test": request.headers.get("X-Test"),
            "body": request.get_body().decode("utf-8"),
        }
        return func.HttpResponse(
            json.dumps(echoed), status_code=201, headers={"X-Echo": "yes"}, mimetype="application/json"
        )

    @app.route(route="items/new", methods=["GET"])
    def new_item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("literal wins")

    # One resource, two functions (as the connector's admin API does): a 405 lists both methods.
    @app.route(route="pairs", methods=["GET"])
    def read_pair(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("read")

    @app.route(route="pairs", methods=["PUT"])
    def write_pair(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("written")

    @app.route(route="greet/{name?}", methods=["GET"])
    def greet(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params.get("name", "nobody"))

    @app.route(route="words/{word:alpha}", methods=["GET"])
    def word(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params["word"])

    @app.route(route="things/{thing_id:guid}", methods=["GET"])
    def thing(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.route_params["thing_id"])

    @app.route(route="boom")
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret-detail-never-in-a-response")

    @app.route(route="later")
    async def later(req: func.HttpRequest) -> func.HttpResponse:
        await asyncio.sleep(0.01)
        return func.HttpResponse(b"\x00async bytes", mimetype="application/octet-stream")

    @app.route()  # no route: the function name is the route
    def setting(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(os.environ.get("HOSTAPP_GREETING", "unset"))

    return app, calls
