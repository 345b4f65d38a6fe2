"""``python -m dev.host``: run the local Functions host in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from dev.host.host import LocalFunctionsHost


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dev.host", description=__doc__)
    parser.add_argument("--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--app", default="function_app:app", help="the FunctionApp as module:attr")
    parser.add_argument("--project-dir", default=".", help="folder with host.json and the app module")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="seconds between polls of an idle queue (default: min(maxPollingInterval, 2 s))",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The storage SDK logs every request with its headers at INFO: keep it to problems only.
    logging.getLogger("azure").setLevel(logging.WARNING)

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("dev.host").info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with LocalFunctionsHost(args.project_dir, args.app, args.port, args.poll_interval):
        while not stop.wait(0.5):  # a short wait keeps the main thread responsive to signals
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
