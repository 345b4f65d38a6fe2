"""Sandbox simulators: the outside services, played on 127.0.0.1 with their real wire protocols.

Every simulator is a Starlette application built by a ``create_app(...)`` factory, so a
test can run it in-process (``httpx.ASGITransport``) or on a real socket
(:class:`dev.sandbox.server.LoopbackServer`). Each one mounts the shared fault switches
(:mod:`dev.sandbox.faults`) under ``/_sandbox/faults`` so tests and demos can inject 429s,
5xx answers and latency without touching the simulator's code.
"""
