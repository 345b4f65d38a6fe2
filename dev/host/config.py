"""What the host reads from the project directory: ``local.settings.json``, ``host.json`` and
``%SETTING%`` references, read the way the real Functions host reads them."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

logger = logging.getLogger("dev.host.config")

_SETTING_REF = re.compile(r"%([^%\s]+)%")
# .NET TimeSpan as host.json spells it: [d.]hh:mm:ss[.fffffff]
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


class MissingSettingError(ValueError):
    """A ``%SETTING%`` reference names an app setting that is not set."""

    def __init__(self, setting: str, used_by: str = "") -> None:
        where = f" (used by {used_by})" if used_by else ""
        super().__init__(f"app setting {setting!r} is not set{where}")
        self.setting = setting


def resolve_setting_refs(value: str, environ: Mapping[str, str], used_by: str = "") -> str:
    """Replace every ``%NAME%`` in ``value`` with the app setting ``NAME`` (as the host does for
    schedules, queue names and routes)."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise MissingSettingError(name, used_by)
        return environ[name]

    return _SETTING_REF.sub(lookup, value)


def parse_timespan(text: str) -> timedelta:
    """Parse a host.json TimeSpan such as ``"00:01:00"`` or ``"1.02:00:00"``."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise ValueError(f"not a TimeSpan (expected [d.]hh:mm:ss): {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


@dataclass(frozen=True)
class QueuesConfig:
    """``extensions.queues`` of host.json, with the host's defaults."""

    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    batch_size: int = 16
    max_polling_interval: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the local host honours."""

    route_prefix: str = "api"
    queues: QueuesConfig = QueuesConfig()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HostConfig":
        extensions = data.get("extensions") or {}
        http = extensions.get("http") or {}
        queues = extensions.get("queues") or {}
        defaults = QueuesConfig()
        return cls(
            route_prefix=str(http.get("routePrefix", "api")).strip("/"),
            queues=QueuesConfig(
                max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
                visibility_timeout=_timespan_or(queues, "visibilityTimeout", defaults.visibility_timeout),
                # The real host caps batchSize at 32 (the storage service's receive limit).
                batch_size=max(1, min(32, int(queues.get("batchSize", defaults.batch_size)))),
                max_polling_interval=_timespan_or(
                    queues, "maxPollingInterval", defaults.max_polling_interval
                ),
            ),
        )


def _timespan_or(section: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    value = section.get(key)
    return default if value is None else parse_timespan(str(value))


def load_host_config(project_dir: Path) -> HostConfig:
    """Read ``host.json`` (absent file: the host's defaults)."""
    path = project_dir / "host.json"
    if not path.exists():
        logger.warning("no host.json in %s: using the host's defaults", project_dir)
        return HostConfig()
    return HostConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))


def apply_local_settings(project_dir: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Copy ``local.settings.json`` "Values" into ``environ`` without overriding what is already
    set, like ``func start``. Returns the names it added, so the host can take them back."""
    path = project_dir / "local.settings.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("IsEncrypted"):
        raise ValueError(f"{path} is encrypted: the local host reads plain values only")
    added: list[str] = []
    for name, value in (data.get("Values") or {}).items():
        if name not in environ:
            environ[name] = "" if value is None else str(value)
            added.append(name)
    logger.info("loaded %d setting(s) from local.settings.json", len(added))
    return added
