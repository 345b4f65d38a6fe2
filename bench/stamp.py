"""What every benchmark's stamp starts with: one process, torn down as a whole.

    class MyStamp(BenchStamp):
        tmp_prefix = "bench-mine-"
        def _start(self) -> None:
            base = self._base()          # keys, TLS, Azurite and free ports, cleaned up on exit
            ...                          # the simulators and the connector this bench needs

Entered, a stamp starts; if starting fails, or on exit, everything it registered on
``self._exit`` stops (servers, Azurite, the temporary folder), in reverse order.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Base:
    tmp: Path
    tls: object  # dev.sandbox.tls.LocalTls
    keys: object  # dev.keys.LocalKeys
    azurite: object  # dev.azurite.AzuriteEndpoints
    ports: object  # dev.stack.Ports


class BenchStamp:
    tmp_prefix = "bench-"  # the temporary folder's name

    def __init__(self) -> None:
        self._exit = ExitStack()

    def _set_environ(self, env: dict[str, str]) -> None:
        """Set the connector's environment for this stamp; the previous values come back on exit."""
        import os

        previous = {key: os.environ.get(key) for key in env}
        os.environ.update(env)

        def restore() -> None:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

        self._exit.callback(restore)

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()

    def _start(self) -> None:
        raise NotImplementedError

    def _base(self) -> Base:
        """A temporary folder with the local stack's TLS and keys, Azurite on free ports, and
        free ports for the host and the simulators; all undone when the stamp exits."""
        from dev.azurite import Azurite, AzuriteEndpoints
        from dev.keys import ensure_local_keys
        from dev.sandbox.server import free_port
        from dev.sandbox.tls import ensure_local_tls
        from dev.stack import Ports

        tmp = Path(tempfile.mkdtemp(prefix=self.tmp_prefix))
        self._exit.callback(shutil.rmtree, tmp, True)
        tls = ensure_local_tls(tmp / "tls")
        keys = ensure_local_keys(tmp / "keys")
        azurite = AzuriteEndpoints(free_port(), free_port(), free_port())
        self._exit.enter_context(Azurite(azurite))
        ports = Ports(host=free_port(), cerner=free_port(), entra=free_port(), acs=free_port(), graph=free_port())
        return Base(tmp, tls, keys, azurite, ports)


def run_reporting(main) -> None:
    """Run a benchmark's ``main`` and exit 0 whatever happens: a benchmark reports (its GOAL line),
    it does not fail CI; a crash is printed and reported as a missed goal."""
    import sys
    import traceback

    try:
        main()
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        print(f"GOAL MISSED: the benchmark could not run ({type(exc).__name__}: {exc})")
    sys.exit(0)
