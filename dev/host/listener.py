"""A trigger listener's background thread: started once, stopped by an event, joined on stop."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("dev.host")


class ListenerThread:
    """Base of the timer and queue listeners: subclasses implement ``_run`` and watch ``_stop``."""

    kind = "listener"

    def __init__(self, name: str) -> None:
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _describe(self) -> str:
        return ""

    def start(self) -> None:
        logger.info("%s %s: %s", self.kind, self._name, self._describe())
        self._thread = threading.Thread(target=self._run, name=f"dev.host.{self.kind}:{self._name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("%s %s still running after %.0f s", self.kind, self._name, timeout)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError
