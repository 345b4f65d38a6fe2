"""Repairs for known artefacts in Oracle Health (Cerner) FHIR R4 JSON, applied before validation.

Each repair is conservative: it fires only on the exact shape seen in Cerner's published JSON,
keeps the meaning of the document, and is recorded (path + kind, never a value) so callers can
log it. Everything else is left for validation to accept or reject.

Repaired (with the ``RepairKind`` recorded):
- ``unwrapped-entry``: a Bundle entry ``{fullUrl, resource}`` where a resource belongs (the whole
  document, or inside a Bundle entry's ``resource``). The inner resource takes its place; inside a
  Bundle the entry keeps the ``fullUrl`` that agrees with the resource's type/id.
- ``rank-from-string``: ``ContactPoint.rank`` sent as a string of digits (``"1"``) becomes the
  integer. (pydantic would coerce it silently; the repair makes it visible.)
- ``dropped-empty-extension``: an ``extension`` whose only value is an empty string, e.g. Cerner's
  ``action-comment`` with ``valueString: ""``. FHIR forbids empty strings and an extension needs a
  value, so the whole extension goes; an empty comment says nothing, so no meaning is lost.
- ``dropped-empty-string``: any other object member whose value is ``""`` is dropped (FHIR: strings
  SHALL NOT be empty; absent means the same). Not inside ``modifierExtension``: dropping part of a
  modifier could change what the resource means, so validation rejects those instead.
- ``unescaped-div``: ``text.div`` published with every quote escaped (``<div xmlns=\\"...\\">``,
  a Ruby rendering artefact, not well-formed XHTML): ``\\"`` becomes ``"``.

Seen and deliberately left alone: ``\\n`` written literally in ``Address.text`` (a valid string,
and the connector never reads address text); empty strings inside arrays (shifting array
positions would misalign ``_element`` extensions, so validation rejects them).

Paths use the FHIR/JSON spelling ``entry[0].resource.telecom[1].rank``; ``(root)`` is the document.
Paths under an unwrapped entry are relative to the slot it was moved into.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

JsonPath = tuple[str | int, ...]

ROOT = "(root)"


class RepairKind(str, Enum):
    unwrapped_entry = "unwrapped-entry"
    rank_from_string = "rank-from-string"
    dropped_empty_extension = "dropped-empty-extension"
    dropped_empty_string = "dropped-empty-string"
    unescaped_div = "unescaped-div"


@dataclass(frozen=True)
class Repair:
    """One repair applied to the received JSON: where, and which kind. Safe to log."""

    path: str
    kind: RepairKind

    def __str__(self) -> str:
        return f"{self.path}: {self.kind.value}"


def format_path(path: JsonPath) -> str:
    """``("entry", 0, "resource")`` -> ``entry[0].resource``; ``()`` -> ``(root)``."""
    text = ""
    for segment in path:
        text += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if text else segment)
    return text or ROOT


def is_resource_slot(path: JsonPath) -> bool:
    """True where FHIR puts a whole resource: the document, ``contained[i]``, a Bundle entry's
    ``resource`` or ``response.outcome``, a Parameters ``parameter[i].resource`` (or ``part``)."""
    if not path:
        return True
    if len(path) >= 2 and path[-2] == "contained" and isinstance(path[-1], int):
        return True
    if path[-2:] == ("response", "outcome"):
        return True
    return (
        len(path) >= 3
        and path[-1] == "resource"
        and isinstance(path[-2], int)
        and path[-3] in ("entry", "parameter", "part")
    )


def repair(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[Repair]]:
    """A repaired copy of ``data`` (never mutated) and the repairs applied, in document order."""
    repairs: list[Repair] = []
    if _is_wrapped_entry(data):
        repairs.append(Repair(ROOT, RepairKind.unwrapped_entry))
        data = data["resource"]
    return _object(data, (), repairs), repairs


# The exact published shape: an entry, nothing else, around something that is a resource.
def _is_wrapped_entry(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and "resourceType" not in value
        and "resource" in value
        and set(value) <= {"fullUrl", "resource"}
        and isinstance(value["resource"], Mapping)
        and "resourceType" in value["resource"]
    )


def _walk(value: Any, path: JsonPath, repairs: list[Repair]) -> Any:
    if isinstance(value, Mapping):
        return _object(value, path, repairs)
    if isinstance(value, list):
        return [_walk(item, (*path, i), repairs) for i, item in enumerate(value)]
    return value


def _object(obj: Mapping[str, Any], path: JsonPath, repairs: list[Repair]) -> dict[str, Any]:
    if len(path) >= 2 and path[-2] == "entry" and _is_wrapped_entry(obj.get("resource")):
        obj = _unwrap_entry(obj, path, repairs)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        here = (*path, key)
        inside_modifier = "modifierExtension" in path
        if value == "" and not inside_modifier:
            repairs.append(Repair(format_path(here), RepairKind.dropped_empty_string))
        elif key == "extension" and isinstance(value, list) and not inside_modifier:
            kept = _extensions(value, here, repairs)
            if kept:  # an empty array is not valid FHIR JSON either
                out[key] = kept
        elif key == "rank" and isinstance(value, str) and value.isascii() and value.isdigit():
            repairs.append(Repair(format_path(here), RepairKind.rank_from_string))
            out[key] = int(value)
        elif key == "div" and path[-1:] == ("text",) and _is_escaped_div(value):
            repairs.append(Repair(format_path(here), RepairKind.unescaped_div))
            out[key] = value.replace('\\"', '"')
        else:
            out[key] = _walk(value, here, repairs)
    return out


def _extensions(items: list[Any], path: JsonPath, repairs: list[Repair]) -> list[Any]:
    kept = []
    for i, item in enumerate(items):
        if _is_empty_extension(item):
            repairs.append(Repair(format_path((*path, i)), RepairKind.dropped_empty_extension))
        else:
            kept.append(_walk(item, (*path, i), repairs))
    return kept


def _is_empty_extension(item: Any) -> bool:
    if not isinstance(item, Mapping) or "extension" in item:
        return False
    values = [key for key in item if key.startswith("value")]
    return bool(values) and all(item[key] == "" for key in values)


def _is_escaped_div(value: Any) -> bool:
    # Only the whole-div artefact: if the root tag's attribute is escaped, every quote was.
    return isinstance(value, str) and value.startswith('<div xmlns=\\"')


def _unwrap_entry(
    entry: Mapping[str, Any], path: JsonPath, repairs: list[Repair]
) -> dict[str, Any]:
    wrapper = entry["resource"]
    resource = wrapper["resource"]
    # FHIR: a RESTful fullUrl ends with the resource's type/id. Keep a candidate that agrees,
    # preferring the inner one (it was written next to the resource it names).
    suffix = f"/{resource.get('resourceType')}/{resource.get('id')}"
    candidates = [u for u in (wrapper.get("fullUrl"), entry.get("fullUrl")) if isinstance(u, str)]
    candidates.sort(key=lambda url: not url.endswith(suffix))
    repairs.append(Repair(format_path((*path, "resource")), RepairKind.unwrapped_entry))
    unwrapped = {**entry, "resource": resource}
    if candidates:
        unwrapped["fullUrl"] = candidates[0]
    return unwrapped
