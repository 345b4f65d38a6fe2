"""Registered OAuth clients: what Cerner's code console holds for each app.

Three kinds, told apart by their credentials (SMART App Launch "client types"):

- public: no secret, no keys (``client-public``); authenticates with ``client_id`` only,
  PKCE protects the code;
- confidential symmetric: ``client_secret``, sent with HTTP Basic (``client_secret_basic``);
- confidential asymmetric: a JWK Set, inline (``jwks``) or fetched (``jwks_uri``), against
  which ``private_key_jwt`` client assertions are verified (SMART Backend Services).

``launch_url`` is what Cerner's code console calls the app's *SMART launch URI*: where
PowerChart sends the clinician (``{launch_url}?iss=...&launch=...``) for an EHR launch. The
sandbox PowerChart page (``/_sandbox/powerchart``) launches the client that has one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    redirect_uris: tuple[str, ...] = ()
    client_secret: str | None = None
    jwks: Mapping[str, Any] | None = None
    jwks_uri: str | None = None
    # The scopes the app was registered for; None allows any scope the simulator knows.
    # Requested scopes outside this set are dropped from the grant, as Cerner does.
    scopes: frozenset[str] | None = None
    name: str = ""
    # The SMART launch URI of Cerner's code console; None: the app is not EHR-launchable.
    launch_url: str | None = None

    def __post_init__(self) -> None:
        # A bare string would become a tuple of characters below: refuse it.
        if isinstance(self.redirect_uris, str) or isinstance(self.scopes, str):
            raise TypeError("redirect_uris and scopes must be lists of strings")
        if self.launch_url is not None:
            parts = urlsplit(self.launch_url) if isinstance(self.launch_url, str) else None
            # PowerChart appends ?iss=&launch=: the URI must be absolute and carry no fragment.
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
                raise ValueError("launch_url must be an absolute http(s) URL without a fragment")
        # Accept lists from JSON / call sites, keep the record hashable and immutable.
        object.__setattr__(self, "redirect_uris", tuple(self.redirect_uris))
        if self.scopes is not None:
            object.__setattr__(self, "scopes", frozenset(self.scopes))

    @property
    def is_public(self) -> bool:
        return self.client_secret is None and self.jwks is None and self.jwks_uri is None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "RegisteredClient":
        """Build from the ``POST /_sandbox/clients`` body (the dataclass field names)."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown client fields: {sorted(unknown)}")
        if not body.get("client_id"):
            raise ValueError("client_id is required")
        return cls(**dict(body))

    def summary(self) -> dict[str, Any]:
        """What the control API shows: no secrets, no keys."""
        kind = "public" if self.is_public else ("symmetric" if self.client_secret else "asymmetric")
        return {"client_id": self.client_id, "name": self.name, "kind": kind,
                "redirect_uris": list(self.redirect_uris), "launch_url": self.launch_url}


@dataclass
class ClientRegistry:
    """Clients by id. Tests register from their own thread while the server runs."""

    _clients: dict[str, RegisteredClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, clients: Iterable[RegisteredClient]) -> "ClientRegistry":
        registry = cls()
        for client in clients:
            registry.register(client)
        return registry

    def register(self, client: RegisteredClient) -> None:
        with self._lock:
            self._clients[client.client_id] = client

    def get(self, client_id: str | None) -> RegisteredClient | None:
        if not client_id:
            return None
        with self._lock:
            return self._clients.get(client_id)

    def all(self) -> list[RegisteredClient]:
        with self._lock:
            return list(self._clients.values())
