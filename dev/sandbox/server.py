"""Run an ASGI app on a loopback socket in a background thread (tests and ``make run``)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from pathlib import Path

import uvicorn


def free_port() -> int:
    """A port the kernel says is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackServer:
    """One uvicorn server bound to 127.0.0.1, started and stopped from the calling thread.

    Only loopback is ever bound: the sandbox must not be reachable from anywhere else.
    """

    def __init__(
        self,
        app,
        port: int = 0,
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        name: str = "sandbox",
    ) -> None:
        self.port = port or free_port()
        self.name = name
        self.scheme = "https" if certfile else "http"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # Idle keep-alive connections must not hold a stop for long.
            timeout_graceful_shutdown=1,
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "LoopbackServer":
        def run() -> None:
            asyncio.run(self._server.serve())

        self._thread = threading.Thread(target=run, name=f"{self.name}:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout / 2)
            if self._thread.is_alive():  # connections that will not close: cut them
                self._server.force_exit = True
                self._thread.join(timeout / 2)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.name} on port {self.port} did not stop")
            self._thread = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    """An SSL context trusting only the local CA (for clients of an https simulator)."""
    return ssl.create_default_context(cafile=str(ca_file))
