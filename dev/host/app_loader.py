"""Import the project's FunctionApp and index its functions, once, as the worker does."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger("dev.host.loader")

TriggerKind = Literal["http", "timer", "queue"]
_KINDS: dict[str, TriggerKind] = {"httpTrigger": "http", "timerTrigger": "timer", "queueTrigger": "queue"}


@dataclass(frozen=True)
class LoadedFunction:
    """One indexed function: its trigger as the function.json dict (camelCase keys, the same
    for decorator-built and generic triggers) and the user's Python callable."""

    name: str
    kind: TriggerKind
    arg_name: str
    user_function: Callable[..., Any]
    trigger: dict[str, Any] = field(repr=False)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)


def import_app(project_dir: Path, app_ref: str) -> Any:
    """Import ``module:attr`` with ``project_dir`` first on ``sys.path`` (as the worker does)."""
    module_name, _, attr = app_ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"app reference must look like 'module:attr', got {app_ref!r}")
    path = str(project_dir)
    if path not in sys.path:
        sys.path.insert(0, path)
    # A fresh module object each time: get_functions() works once per FunctionApp, and a
    # process may start several hosts (the tests do). Blueprints register into the new app.
    if module_name in sys.modules:
        module = importlib.reload(sys.modules[module_name])
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{module_name} has no attribute {attr!r}") from None


def index_functions(app: Any) -> list[LoadedFunction]:
    """Read ``app.get_functions()`` once (a second call raises) and keep what the host can run."""
    try:
        functions = app.get_functions()
    except ValueError as exc:
        raise ValueError(
            f"{exc} -- app.get_functions() may be called only once per FunctionApp object: "
            "give each host a freshly built app"
        ) from exc
    loaded: list[LoadedFunction] = []
    for function in functions:
        trigger = _to_plain(function.get_trigger().get_dict_repr())
        name = function.get_function_name()
        kind = _KINDS.get(trigger.get("type", ""))
        if kind is None:
            logger.warning("function %s: trigger %r is not run by the local host", name, trigger.get("type"))
            continue
        _warn_unbound(name, function, trigger["name"])
        loaded.append(LoadedFunction(name, kind, trigger["name"], function.get_user_function(), trigger))
    return loaded


def _warn_unbound(name: str, function: Any, arg_name: str) -> None:
    """The local host passes the trigger only; say so up front for anything else declared."""
    extra = [
        b["name"]
        for b in (_to_plain(b.get_dict_repr()) for b in function.get_bindings())
        if b["name"] not in (arg_name, "$return")
    ]
    if extra:
        logger.warning("function %s: bindings %s are not provided by the local host", name, extra)


def _to_plain(value: Any) -> Any:
    """Enums (HttpMethod, AuthLevel, BindingDirection) to their plain values."""
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return getattr(value, "value", value)
