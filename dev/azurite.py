"""Start and stop Azurite (the official Azure Storage emulator, from npm) for the local stack and tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"

# Azurite's well-known development account (public, documented by Microsoft; emulator only).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class AzuriteEndpoints:
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def table_url(self) -> str:
        return f"http://127.0.0.1:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def queue_url(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """The ``AzureWebJobsStorage`` form, as the Functions host and SDKs read it."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT_NAME};"
            f"QueueEndpoint={self.queue_url};TableEndpoint={self.table_url};"
        )


def _wait_for_port(proc: subprocess.Popen, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited (code {proc.returncode}) before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Azurite did not open port {port}")


def _parent_death_signal():
    """A preexec function making the child get SIGTERM when the process that started Azurite
    dies, however it dies (closed terminal, kill -9), so no emulator outlives the stack or a
    test run. Resolved here, in the parent: after fork the child only makes the one call."""
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: Stack.stop still stops it
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Azurite:
    """One Azurite process (its own process group, so stopping it leaves no child behind)."""

    def __init__(self, endpoints: AzuriteEndpoints, *, in_memory: bool = True, location: Path | None = None):
        self.endpoints = endpoints
        self.in_memory = in_memory
        self.location = location
        self._tmp: str | None = None
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Azurite":
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run `npm ci` (make does it for you)")
        args = [
            str(AZURITE_BIN),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--blobPort", str(self.endpoints.blob_port),
            "--queuePort", str(self.endpoints.queue_port),
            "--tablePort", str(self.endpoints.table_port),
        ]
        if self.in_memory:  # Azurite refuses a --location with in-memory persistence
            args.append("--inMemoryPersistence")
        else:
            if self.location is None:
                self._tmp = tempfile.mkdtemp(prefix="azurite-")
            location = self.location or Path(self._tmp)
            location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(location)]
        # Its own words, kept only to explain a failed start (e.g. a port taken meanwhile).
        self._output = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            args, stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
        deadline = time.monotonic() + timeout
        try:
            for port in (self.endpoints.queue_port, self.endpoints.table_port):
                _wait_for_port(self._proc, port, deadline)
        except RuntimeError as exc:
            self._output.seek(0)
            said = self._output.read()[-600:].decode("utf-8", "replace").strip()
            self.stop()
            raise RuntimeError(f"{exc}: {said}" if said else str(exc)) from None
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._proc = None
        if getattr(self, "_output", None) is not None:
            self._output.close()
            self._output = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
