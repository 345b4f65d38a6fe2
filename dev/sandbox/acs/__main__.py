"""Run the simulator alone: ``python -m dev.sandbox.acs [--port 8089] [--key BASE64] [--number +1...]``.

Prints the endpoint and key to give the SDKs. Plain http on loopback: construct the clients
with the endpoint and ``AzureKeyCredential(key)``, not from a connection string (the SMS
SDK's ``from_connection_string`` rewrites the endpoint to https).
"""

from __future__ import annotations

import argparse
import threading

from ..server import LoopbackServer
from . import create_app, generate_access_key

DEFAULT_PORT = 8089


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--key", default=None, help="base64 access key (default: a new random one)")
    parser.add_argument("--number", action="append", default=[], help="a number owned from the start")
    args = parser.parse_args()
    key = args.key or generate_access_key()
    app = create_app(public_url=f"http://127.0.0.1:{args.port}", access_key=key, purchased_numbers=args.number)
    with LoopbackServer(app, args.port, name="acs") as server:
        print(f"Sandbox ACS on {server.url}\naccess key: {key}\nCtrl+C stops.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
