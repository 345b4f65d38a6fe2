"""Run the issuer alone: ``python -m dev.sandbox.entra [--port 8443] [--tls-dir DIR]``."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from ..server import LoopbackServer
from ..tls import DEFAULT_DIR, ensure_local_tls
from . import create_app

DEFAULT_PORT = 8443


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--tls-dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    tls = ensure_local_tls(args.tls_dir)
    app = create_app(public_url=f"https://127.0.0.1:{args.port}")
    server = LoopbackServer(app, args.port, certfile=tls.cert_file, keyfile=tls.key_file, name="entra")
    with server:
        print(f"Sandbox Entra ID on {server.url} (CA: {tls.ca_file}); Ctrl+C stops.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
