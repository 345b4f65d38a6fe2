"""Host name resolution with a deadline, as a plain callable the safe HTTP client takes.

``socket.getaddrinfo`` has no timeout of its own and blocks the calling thread, so it runs in a
small shared worker pool and the caller waits at most ``timeout`` seconds. A lookup that hangs
keeps its worker until the system resolver gives up, which is why the pool is shared and small
rather than one thread per lookup.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from connector.adapters.net.errors import OutboundConnectionFailed, OutboundTimeout

# resolve(host, port) -> the host's IP addresses as text, in the order to try them.
Resolver = Callable[[str, int], Sequence[str]]

_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dns")


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), bounded by ``timeout`` seconds."""

    def __init__(self, timeout: float = 5.0, lookup: Callable[..., list] = socket.getaddrinfo) -> None:
        self.timeout = timeout
        self._lookup = lookup  # getaddrinfo's signature; replaceable so tests can make it hang

    def __call__(self, host: str, port: int) -> list[str]:
        future = _POOL.submit(self._lookup, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=self.timeout)
        except FutureTimeout:
            raise OutboundTimeout(
                f"Resolving the host name {host} took longer than {self.timeout:g} seconds."
            ) from None
        except (OSError, UnicodeError):
            raise OutboundConnectionFailed(f"The host name {host} could not be resolved.") from None
        # getaddrinfo repeats an address once per protocol family entry; keep the first of each.
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
