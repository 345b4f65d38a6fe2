"""HTTP trigger route templates, spelled as Functions (ASP.NET Core routing) spells them.

Supported: literal segments, ``{name}``, optional ``{name?}``, defaults ``{name=value}``,
catch-all ``{*rest}``, several parameters in one segment (``{name}.{ext}``) and the
constraints ``int long alpha bool guid double float decimal datetime minlength(n)
maxlength(n) length(n[,m]) min(n) max(n) range(n,m) regex(expr)``, chainable
(``{id:int:min(1)}``). Matching is case-insensitive and tolerates a trailing slash, like the
host. An unknown constraint fails at load time instead of silently never matching.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

Constraint = Callable[[str], bool]

_TOKEN = re.compile(r"\{([^{}]+)\}")
_CONSTRAINT_CALL = re.compile(r"^(\w+)\((.*)\)$")
# Lower sorts first: literal, complex segment, constrained parameter, parameter, catch-all.
_LITERAL, _COMPLEX, _CONSTRAINED, _PARAMETER, _CATCH_ALL = range(1, 6)


def _integer(bits: int) -> Constraint:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)
    return lambda v: re.fullmatch(r"[-+]?\d+", v) is not None and low <= int(v) < high


def _number(value: str) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return number == number and abs(number) != float("inf")  # not NaN, not infinite


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_SIMPLE: dict[str, Constraint] = {
    "int": _integer(32),
    "long": _integer(64),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _guid,
    "double": _number,
    "float": _number,
    "decimal": _number,
    "datetime": _datetime,
}


def _constraint(text: str) -> Constraint:
    if text.lower() in _SIMPLE:
        return _SIMPLE[text.lower()]
    call = _CONSTRAINT_CALL.match(text)
    if call:
        name, raw = call.group(1).lower(), call.group(2)
        if name == "regex":
            pattern = re.compile(raw, re.IGNORECASE)
            return lambda v: pattern.search(v) is not None
        args = [int(a) for a in raw.split(",")]
        if name == "minlength":
            return lambda v: len(v) >= args[0]
        if name == "maxlength":
            return lambda v: len(v) <= args[0]
        if name == "length":
            low, high = (args[0], args[0]) if len(args) == 1 else (args[0], args[1])
            return lambda v: low <= len(v) <= high
        as_int = _integer(64)
        if name == "min":
            return lambda v: as_int(v) and int(v) >= args[0]
        if name == "max":
            return lambda v: as_int(v) and int(v) <= args[0]
        if name == "range":
            return lambda v: as_int(v) and args[0] <= int(v) <= args[1]
    raise ValueError(f"unsupported route constraint {text!r}")


def _split_outside_parens(text: str, separator: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char == "(") - (char == ")")
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


@dataclass(frozen=True)
class _Parameter:
    name: str
    group: str
    constraints: tuple[Constraint, ...]
    optional: bool
    default: str | None
    catch_all: bool

    @classmethod
    def parse(cls, body: str, group: str) -> "_Parameter":
        catch_all = body.startswith("*")
        body = body.lstrip("*")
        optional = body.endswith("?")
        body = body.rstrip("?")
        default = None
        if "=" in body:
            body, default = body.split("=", 1)
        name, *constraints = _split_outside_parens(body, ":")
        return cls(
            name=name.strip(),
            group=group,
            constraints=tuple(_constraint(c) for c in constraints),
            optional=optional or catch_all or default is not None,
            default=default,
            catch_all=catch_all,
        )


class RouteTemplate:
    """One compiled route, e.g. ``RouteTemplate("items/{id:int}", prefix="api")``."""

    def __init__(self, route: str, prefix: str = "api") -> None:
        self.route = route.strip("/")
        self.display = "/" + "/".join(p for p in (prefix.strip("/"), self.route) if p)
        self._params: list[_Parameter] = []
        rank: list[int] = []
        pattern = "".join("/" + re.escape(s) for s in prefix.strip("/").split("/") if s)
        for segment in self.route.split("/") if self.route else []:
            piece, segment_rank = self._compile_segment(segment)
            pattern += piece
            rank.append(segment_rank)
        self._regex = re.compile(f"^{pattern}/?$", re.IGNORECASE)
        self.precedence: tuple[int, ...] = tuple(rank)

    def _new_param(self, body: str) -> _Parameter:
        param = _Parameter.parse(body, f"p{len(self._params)}")
        self._params.append(param)
        return param

    def _compile_segment(self, segment: str) -> tuple[str, int]:
        whole = _TOKEN.fullmatch(segment)
        if whole:
            param = self._new_param(whole.group(1))
            capture = f"(?P<{param.group}>{'.*' if param.catch_all else '[^/]+'})"
            rank = _CATCH_ALL if param.catch_all else _CONSTRAINED if param.constraints else _PARAMETER
            return (f"(?:/{capture})?" if param.optional else f"/{capture}"), rank
        if not _TOKEN.search(segment):
            return "/" + re.escape(segment), _LITERAL
        piece, position = "/", 0
        for token in _TOKEN.finditer(segment):
            param = self._new_param(token.group(1))
            piece += re.escape(segment[position : token.start()]) + f"(?P<{param.group}>[^/]+?)"
            position = token.end()
        return piece + re.escape(segment[position:]), _COMPLEX

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters if ``path`` (already percent-decoded) matches, else None."""
        found = self._regex.match(path)
        if not found:
            return None
        values: dict[str, str] = {}
        for param in self._params:
            value = found.group(param.group)
            if not value:
                if param.default is not None:
                    values[param.name] = param.default
                continue
            if not all(check(value) for check in param.constraints):
                return None
            values[param.name] = value
        return values
