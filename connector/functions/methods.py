"""405 Method Not Allowed, with ``Allow``, for the methods a documented path does not serve.

The Functions host routes by method: a request whose method no route of its path lists never
reaches a function, and the host answers it 404 without ``Allow`` (RFC 9110 wants 405 and
``Allow``). So each path of the OpenAPI document gets one more function on the same route
template, for the methods a trigger can list (``azure.functions.HttpMethod``: GET POST PUT PATCH
DELETE HEAD OPTIONS) that the path does not serve; it answers 405 with the path's methods in
``Allow``. The paths and their methods come from ``openapi.OPERATIONS``: the document stays the
one list.

Two templates can match one URL (``/admin/endpoints/validate`` and
``/admin/endpoints/{endpoint_id}``). The more specific one wins in the local host (and in
ASP.NET Core), but the Azure host has no such precedence (it tries routes in an order of its
own), so a 405 function never lists a method that a more specific overlapping path serves: it
can never shadow a real operation, whatever the order.

Not covered in Azure: methods a trigger cannot list (TRACE, CONNECT, QUERY, ...) and, on a
parameterised path, the methods its more specific sibling serves (POST /admin/endpoints/{id}):
the real host answers those 404 without ``Allow``. The local host (dev/host) answers them 405
with ``Allow`` itself. CORS preflights (OPTIONS with ``Origin``) never reach a function in
Azure: the platform's CORS answers them.
"""

from __future__ import annotations

import re

import azure.functions as func

from connector.functions.http import handles_errors, json_response
from connector.functions.openapi import OPERATIONS

bp = func.Blueprint()

ROUTABLE = tuple(method.value for method in func.HttpMethod)  # what a trigger may list


def served_methods() -> dict[str, list[str]]:
    """Each documented path and the methods it serves (upper case, sorted)."""
    paths: dict[str, set[str]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, set()).add(op.method.upper())
    return {path: sorted(methods) for path, methods in paths.items()}


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _more_specific(path: str, other: str) -> bool:
    """Can one URL match both templates, and does ``path`` win there (a literal segment where
    ``other`` has a parameter, at the first segment where they differ)?"""
    mine, theirs = _segments(path), _segments(other)
    if len(mine) != len(theirs) or path == other:
        return False
    for a, b in zip(mine, theirs):
        if a == b:
            continue
        a_param, b_param = a.startswith("{"), b.startswith("{")
        if not a_param and not b_param:
            return False  # two different literals: never the same URL
        if a_param != b_param:
            return b_param and _segments_overlap(mine, theirs)
    return False


def _segments_overlap(mine: list[str], theirs: list[str]) -> bool:
    return all(a == b or a.startswith("{") or b.startswith("{") for a, b in zip(mine, theirs))


def unserved_methods() -> dict[str, tuple[list[str], list[str]]]:
    """Each documented path: (the methods it serves, the methods its 405 function takes)."""
    served = served_methods()
    result = {}
    for path, methods in served.items():
        shadowing = {m for other, others in served.items() if _more_specific(other, path) for m in others}
        result[path] = (methods, [m for m in ROUTABLE if m not in methods and m not in shadowing])
    return result


def function_name(path: str) -> str:
    return "not_allowed_" + re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")


def _register(path: str, served: list[str], others: list[str]) -> None:
    allow = ", ".join(served)

    def not_allowed(req: func.HttpRequest) -> func.HttpResponse:
        return json_response({"error": "method_not_allowed", "message": f"this path serves {allow} only"},
                             405, headers={"Allow": allow})

    not_allowed.__name__ = not_allowed.__qualname__ = function_name(path)
    route = bp.route(route=path.lstrip("/"), methods=others, auth_level=func.AuthLevel.ANONYMOUS)
    bp.function_name(function_name(path))(route(handles_errors(not_allowed)))


for _path, (_served, _others) in unserved_methods().items():
    if _others:
        _register(_path, _served, _others)
