"""JSON Patch (RFC 6902) on Appointment, limited to what Cerner documents.

Supported: ``replace /status`` along Cerner's documented transitions, and ``test`` on any
path (RFC 6901 pointer). Anything else is 422 Unprocessable Entity, as Cerner answers
unsupported operations; a body that is not a JSON Patch document at all is 400.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import FhirError
from .store import Resource

# "When updating an appointment, the resource provides the ability to change the
# Appointment.status in the following sequences" (fhir.cerner.com, Appointment).
TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"booked", "cancelled"}),
    "booked": frozenset({"arrived", "checked-in", "cancelled"}),
    "arrived": frozenset({"checked-in", "cancelled"}),
    "checked-in": frozenset({"fulfilled", "cancelled"}),
}


def apply_appointment_patch(appointment: Resource, operations: Any) -> Resource:
    if not isinstance(operations, list) or not operations or not all(isinstance(o, dict) for o in operations):
        raise FhirError(400, "structure", "The body must be a non-empty JSON Patch array of operation objects.")
    patched = copy.deepcopy(appointment)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path")
        if op == "test":
            if "value" not in operation or _resolve(patched, path) != operation["value"]:
                raise FhirError(409, "conflict", f"JSON Patch test failed at '{path}'.")
        elif op == "replace" and path == "/status":
            _replace_status(patched, operation.get("value"))
        else:
            raise FhirError(422, "not-supported",
                            f"Unsupported JSON Patch operation {op!r} on {path!r}. Supported: "
                            "'replace' of '/status' and 'test'.")
    return patched


def _replace_status(appointment: Resource, value: Any) -> None:
    current = appointment["status"]
    allowed = TRANSITIONS.get(current, frozenset())
    if value not in allowed:
        targets = ", ".join(sorted(allowed)) or "none"
        raise FhirError(422, "business-rule",
                        f"Appointment status cannot change from '{current}' to {value!r}. Allowed: {targets}.")
    appointment["status"] = value


def _resolve(document: Any, pointer: Any) -> Any:
    """The value at an RFC 6901 pointer, or a sentinel that equals nothing when absent."""
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise FhirError(400, "structure", f"Invalid JSON Pointer {pointer!r}.")
    node = document
    for token in pointer.split("/")[1:] if pointer else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _MISSING
    return node


class _Missing:
    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]


_MISSING = _Missing()
