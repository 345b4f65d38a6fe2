"""A local Azure Functions host for the Python v2 programming model (the real ``func`` host
cannot be installed on these machines).

It loads ``function_app:app`` from a project directory and behaves, as far as the app can
tell, like ``func start``: HTTP triggers under ``/api`` on 127.0.0.1:7071, timers on their
NCRONTAB schedules, queue triggers fed from storage (base64, dequeue count, poison queue),
``POST /admin/functions/{name}`` to run a non-HTTP function once. Never deployed.

    from dev.host import LocalFunctionsHost
    with LocalFunctionsHost(".", port=0) as host:
        ...  # host.url

or ``python -m dev.host [--port 7071] [--app function_app:app] [--project-dir .]``.
"""

from dev.host.host import LocalFunctionsHost

__all__ = ["LocalFunctionsHost"]
