"""The local stack: never deployed (see .funcignore).

- ``dev.host``: a local Azure Functions host for ``function_app.app``.
- ``dev.sandbox``: loopback simulators of the services we cannot reach here.
- ``dev.stack``: ``make run``, which starts all of it with a seeded demo tenant.
"""
