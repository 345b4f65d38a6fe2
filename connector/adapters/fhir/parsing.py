"""The one place where FHIR R4 JSON from an EHR becomes ``fhir.resources.R4B`` models.

    parsed = parse_resource(response.json(), expected="Appointment")
    appointment = parsed.resource                 # an R4B Appointment
    for repair in parsed.repairs:                 # paths and kinds only: safe to log
        logger.info("FHIR repair applied: %s", repair)

Steps: known Cerner artefacts are repaired (see ``repairs``); resource types are checked (the
document, contained resources, Bundle entries); the R4B model validates everything else.
Anything unusable raises ``FhirParseError``, whose message and problems name the JSON path and
the kind of error, never a value (values may be PHI). pydantic's own error is neither shown nor
chained: its text carries ``input_value=...``, and a chained cause reaches logs with tracebacks.

What R4B does not check, so callers must not rely on it: codes against their value sets (any
string passes as a ``code``), the XHTML of ``text.div``, invariants such as ext-1 or fullUrl/id
agreement. pydantic also coerces numeric strings and booleans into integer elements silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from connector.adapters.fhir.repairs import (
    ROOT,
    JsonPath,
    Repair,
    format_path,
    is_resource_slot,
    repair,
)
from connector.errors import InvalidUpstreamData, Problem

NO_RESOURCE_TYPE = "not a FHIR resource (no resourceType)"
UNKNOWN_RESOURCE_TYPE = "unknown resourceType (not a FHIR R4 resource type)"

R = TypeVar("R", bound=Resource)

# Enough to see a pattern in a bad document without flooding an error response.
_MAX_PROBLEMS = 20
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource"})


class FhirParseError(InvalidUpstreamData):
    """The EHR sent JSON that is not a usable FHIR R4 resource (paths and error kinds only)."""


@dataclass(frozen=True)
class Parsed(Generic[R]):
    """A validated resource and the repairs that were needed to get it."""

    resource: R
    repairs: tuple[Repair, ...] = ()


def parse_resource(
    data: Mapping[str, Any], expected: str | tuple[str, ...] | None = None
) -> Parsed[Resource]:
    """Parse one resource of any type, or only of the ``expected`` type(s)."""
    if not isinstance(data, Mapping):
        raise _error(ROOT, "not a FHIR resource (not a JSON object)")
    fixed, repairs = repair(data)
    resource_type = fixed.get("resourceType")
    if not resource_type:
        raise _error(ROOT, NO_RESOURCE_TYPE)
    model = _resource_class(resource_type)
    if model is None:
        raise _error(ROOT, UNKNOWN_RESOURCE_TYPE)
    wanted = (expected,) if isinstance(expected, str) else expected
    if wanted and resource_type not in wanted:
        # Safe to name: resource_type is a known R4 type name by now, not free text.
        raise _error("resourceType", f"expected {' or '.join(wanted)}, got {resource_type}")
    _check_nested_resources(fixed, ())
    try:
        resource = model.model_validate(fixed)
    except ValidationError as exc:
        error = _invalid(resource_type, exc)
    except Exception as exc:  # fhir.resources raises e.g. a bare KeyError on some odd input
        error = _error(ROOT, f"{resource_type} could not be built ({type(exc).__name__})")
    else:
        return Parsed(resource, tuple(repairs))
    # Raised outside the except blocks, so the library's error is not even the __context__.
    raise error


def parse_bundle(
    data: Mapping[str, Any], entry_types: str | tuple[str, ...] | None = None
) -> Parsed[Bundle]:
    """Parse a Bundle (e.g. a searchset page); with ``entry_types``, every entry's resource
    must be one of them. OperationOutcome entries with ``search.mode = outcome`` are always
    allowed: FHIR search may add them to any page (warnings). Entries without a resource are
    not checked."""
    parsed = parse_resource(data, expected="Bundle")
    bundle = cast(Bundle, parsed.resource)
    if entry_types:
        _check_entry_types(bundle, (entry_types,) if isinstance(entry_types, str) else entry_types)
    return Parsed(bundle, parsed.repairs)


def _check_entry_types(bundle: Bundle, wanted: tuple[str, ...]) -> None:
    for i, entry in enumerate(bundle.entry or []):
        if entry.resource is None:
            continue
        resource_type = entry.resource.get_resource_type()
        is_outcome = entry.search is not None and entry.search.mode == "outcome"
        if resource_type not in wanted and not (is_outcome and resource_type == "OperationOutcome"):
            raise _error(
                f"entry[{i}].resource", f"expected {' or '.join(wanted)}, got {resource_type}"
            )


def _resource_class(name: Any) -> type[Resource] | None:
    """The R4B model class of a concrete resource type, or None for anything else."""
    if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name) or name in _ABSTRACT_TYPES:
        return None
    try:
        model = get_fhir_model_class(name)
    except ValueError:
        return None
    # get_fhir_model_class also knows data types (HumanName, ...): those are not resources.
    return model if issubclass(model, Resource) else None


def _check_nested_resources(value: Any, path: JsonPath) -> None:
    """Every resource slot below the document holds a resource of a known type.

    Checked here because R4B reports these confusingly (a missing resourceType becomes
    "extra inputs" errors) or not at all (an unknown contained type raises a bare KeyError)."""
    if path and is_resource_slot(path):
        if not isinstance(value, Mapping):
            raise _error(format_path(path), "not a FHIR resource (not a JSON object)")
        if "resourceType" not in value:
            raise _error(format_path(path), NO_RESOURCE_TYPE)
    if isinstance(value, Mapping):
        if path and "resourceType" in value and _resource_class(value["resourceType"]) is None:
            raise _error(format_path(path), UNKNOWN_RESOURCE_TYPE)
        for key, item in value.items():
            _check_nested_resources(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_nested_resources(item, (*path, i))


def _error(path: str, what: str) -> FhirParseError:
    message = what if path == ROOT else f"{path}: {what}"
    return FhirParseError(message, problems=[Problem(path, what)])


def _invalid(resource_type: str, exc: ValidationError) -> FhirParseError:
    # include_input/include_context=False: the offending values never leave pydantic.
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    problems = [Problem(_loc_path(d["loc"]), _describe(d["type"])) for d in details]
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    message = f"{resource_type} is not valid FHIR R4: {first.field}: {first.message}{more}"
    return FhirParseError(message, problems=problems[:_MAX_PROBLEMS])


def _loc_path(loc: tuple[str | int, ...]) -> str:
    """pydantic's location, spelled as in FHIR JSON (R4B names some fields the Python way)."""
    segments: list[str | int] = []
    for segment in loc:
        if segment == "resource_type":
            segment = "resourceType"
        elif isinstance(segment, str) and segment.endswith("__ext"):
            segment = "_" + segment.removesuffix("__ext")
        segments.append(segment)
    return format_path(tuple(segments))


_WHAT = {
    "missing": "is required but missing",
    "model_field_validation.missing": "is required but missing",
    "extra_forbidden": "is not an element of this FHIR type",
    "fhir-validation-wrong-resource-type": "has the wrong resourceType",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "list_type": "must be a JSON array",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "json_invalid": "must be a JSON object",
    "string_pattern_mismatch": "is not in the format its FHIR type requires",
    "value_error": "is not in the format its FHIR type requires, or breaks one of its rules",
    "base64_decode": "is not valid base64",
    "greater_than_equal": "is out of range for its FHIR type",
    "less_than_equal": "is out of range for its FHIR type",
    "greater_than": "is out of range for its FHIR type",
    "less_than": "is out of range for its FHIR type",
}


def _describe(error_type: str) -> str:
    return f"{_WHAT.get(error_type, 'is invalid')} ({error_type})"
