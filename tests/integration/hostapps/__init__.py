"""Small FunctionApps for the local host's tests, and a helper that lays out a project dir.

Each app module exposes ``build_app() -> (FunctionApp, calls)``: a FRESH app per host (an app's
``get_functions()`` may be called only once) and the list its functions record their inputs in.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class HostProject:
    """A tmp project dir whose entry module (unique name) builds one app from a factory."""

    directory: Path
    module: str

    @property
    def app_ref(self) -> str:
        return f"{self.module}:app"

    @property
    def calls(self) -> list[Any]:
        """What the app's functions recorded (available once a host has imported the module)."""
        return sys.modules[self.module].calls


def write_project(
    directory: Path,
    app_module: str,
    *,
    host_json: dict[str, Any] | None = None,
    local_settings: dict[str, str] | None = None,
    portal: dict[str, str] | None = None,
) -> HostProject:
    """Write host.json, an entry module, and optionally local.settings.json and portal/ files."""
    directory.mkdir(parents=True, exist_ok=True)
    module = f"hostapp_{secrets.token_hex(4)}"
    (directory / f"{module}.py").write_text(
        f"from tests.integration.hostapps.{app_module} import build_app\n\napp, calls = build_app()\n"
    )
    (directory / "host.json").write_text(json.dumps({"version": "2.0", **(host_json or {})}))
    if local_settings is not None:
        settings = {"IsEncrypted": False, "Values": local_settings}
        (directory / "local.settings.json").write_text(json.dumps(settings))
    for name, text in (portal or {}).items():
        path = directory / "portal" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return HostProject(directory, module)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
