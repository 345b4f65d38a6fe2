"""Follow a launch as a browser does, over httpx.

httpx keeps no ``Secure`` cookie over http, which browsers do for loopback (a secure context),
so the launch's cookies (``vv_launch_*`` for the callback, ``vv_session`` for the visit page)
are kept here by name and path and sent where a browser would send them.
"""

from __future__ import annotations

import httpx


class BrowserLike:
    def __init__(self, client: httpx.Client):
        self.client = client
        self.cookies: dict[tuple[str, str], str] = {}  # (path, name) -> value

    def _remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            pair, *attributes = [part.strip() for part in header.split(";")]
            name, _, value = pair.partition("=")
            path = next((a.split("=", 1)[1] for a in attributes if a.lower().startswith("path=")), "/")
            if any(a.lower() == "max-age=0" for a in attributes):
                self.cookies.pop((path, name), None)
            else:
                self.cookies[(path, name)] = value

    def get(self, url: str | httpx.URL, **kwargs) -> httpx.Response:
        path = httpx.URL(str(url)).path
        sent = "; ".join(f"{name}={value}" for (prefix, name), value in self.cookies.items()
                         if path == prefix or path.startswith(prefix.rstrip("/") + "/"))
        headers = {**kwargs.pop("headers", {}), **({"Cookie": sent} if sent else {})}
        response = self.client.get(url, headers=headers, **kwargs)
        self._remember(response)
        return response

    def follow(self, url: str, *, stop_at: tuple[int, ...] = ()) -> httpx.Response:
        """GET and follow 302/303 (never more than 8), stopping early on a status in ``stop_at``."""
        response = self.get(url)
        for _ in range(8):
            if response.status_code not in (302, 303) or response.status_code in stop_at:
                return response
            response = self.get(response.url.join(response.headers["location"]))
        raise AssertionError("too many redirects")
