"""Short-lived OAuth artefacts: launch contexts, authorization codes, access tokens, jtis.

Everything here is single use or expiring, and the checks are made under one lock so a
replay racing the first use still loses. The clock is an attribute (``now``) so tests can
move time instead of sleeping.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LAUNCH_TTL = 300  # s: PowerChart mints the launch right before opening the app
CODE_TTL = 60  # s: RFC 6749 recommends at most 10 min; Cerner's are short
TOKEN_TTL = 570  # s: what Cerner's token endpoint answers in expires_in


@dataclass(frozen=True)
class LaunchContext:
    """What the EHR knows when the clinician clicks the app: who, which chart, which visit."""

    patient: str | None = None
    encounter: str | None = None
    user: str | None = None  # Cerner user id: the Practitioner id for the provider persona
    appointment: str | None = None


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    code_challenge: str
    persona: str
    context: LaunchContext
    expires_at: float
    nonce: str | None = None  # OIDC: echoed in the id_token when the authorize request had one


@dataclass(frozen=True)
class AccessToken:
    value: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    context: LaunchContext = LaunchContext()
    persona: str | None = None  # None for backend services (client_credentials)


@dataclass
class GrantStore:
    now: Callable[[], float] = time.time
    _launches: dict[str, tuple[LaunchContext, float]] = field(default_factory=dict)
    _codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    # code -> access token issued for it, so a replayed code can revoke that token
    # (RFC 6749 section 4.1.2: "SHOULD revoke ... all tokens previously issued").
    _redeemed: dict[str, str | None] = field(default_factory=dict)
    _tokens: dict[str, AccessToken] = field(default_factory=dict)
    _jtis: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mint_launch(self, context: LaunchContext) -> str:
        launch = secrets.token_urlsafe(24)
        with self._lock:
            self._launches[launch] = (context, self.now() + LAUNCH_TTL)
        return launch

    def peek_launch(self, launch: str) -> LaunchContext | None:
        """The context of a valid launch without using it up (authorize checks first)."""
        with self._lock:
            entry = self._launches.get(launch)
        if entry is None or entry[1] <= self.now():
            return None
        return entry[0]

    def take_launch(self, launch: str) -> LaunchContext | None:
        with self._lock:
            entry = self._launches.pop(launch, None)
        if entry is None or entry[1] <= self.now():
            return None
        return entry[0]

    def issue_code(self, **fields) -> str:
        code = secrets.token_urlsafe(32)
        record = AuthorizationCode(expires_at=self.now() + CODE_TTL, **fields)
        with self._lock:
            self._codes[code] = record
        return code

    def redeem_code(self, code: str) -> AuthorizationCode | None:
        """The code's grant, once. A second attempt also revokes what the first one got."""
        with self._lock:
            record = self._codes.pop(code, None)
            if record is None:
                issued = self._redeemed.pop(code, None)
                if issued is not None:
                    self._tokens.pop(issued, None)
                return None
            self._redeemed[code] = None
        if record.expires_at <= self.now():
            return None
        return record

    def issue_token(self, *, client_id: str, scopes: tuple[str, ...], context: LaunchContext = LaunchContext(),
                    persona: str | None = None, code: str | None = None) -> AccessToken:
        token = AccessToken(secrets.token_urlsafe(32), client_id, scopes, self.now() + TOKEN_TTL, context, persona)
        with self._lock:
            self._tokens[token.value] = token
            if code is not None and code in self._redeemed:
                self._redeemed[code] = token.value
        return token

    def token(self, value: str) -> AccessToken | None:
        with self._lock:
            token = self._tokens.get(value)
        if token is None or token.expires_at <= self.now():
            return None
        return token

    def revoke(self, value: str) -> None:
        with self._lock:
            self._tokens.pop(value, None)

    def use_jti(self, client_id: str, jti: str, expires_at: float) -> bool:
        """Record a client assertion's jti; False when it was already used (a replay)."""
        now = self.now()
        with self._lock:
            # Forget jtis whose assertions have expired anyway: they cannot be replayed.
            for key in [k for k, exp in self._jtis.items() if exp < now]:
                del self._jtis[key]
            if (client_id, jti) in self._jtis:
                return False
            self._jtis[(client_id, jti)] = expires_at
            return True
