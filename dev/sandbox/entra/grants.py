"""What the issuer remembers between requests: sign-in sessions, codes, refresh tokens.

All in memory and short-lived, like the sandbox itself. Codes are single use and live
ten minutes; SPA refresh tokens live 24 hours (Entra's fixed lifetime for SPAs).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

CODE_LIFETIME = 600
SPA_REFRESH_TOKEN_LIFETIME = 24 * 3600


@dataclass(frozen=True)
class AuthorizationGrant:
    """What a user approved at /authorize, carried by a code or a refresh token."""

    client_id: str
    tid: str
    oid: str
    scope: str
    redirect_uri: str = ""
    code_challenge: str = ""
    nonce: str | None = None
    session_id: str | None = None


@dataclass
class _Entry:
    grant: AuthorizationGrant
    expires_at: float
    redeemed: bool = False


@dataclass
class Session:
    """A browser's sign-in session (the cookie): Entra lets one hold several accounts."""

    id: str
    oids: list[str] = field(default_factory=list)


class GrantStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, _Entry] = {}
        self._refresh_tokens: dict[str, _Entry] = {}
        self._sessions: dict[str, Session] = {}

    # --- sessions --------------------------------------------------------------
    def session(self, session_id: str | None) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id) if session_id else None

    def sign_in(self, session_id: str | None, oid: str) -> Session:
        """Add ``oid`` to the browser's session, starting one if needed."""
        with self._lock:
            session = self._sessions.get(session_id) if session_id else None
            if session is None:
                session = Session(str(uuid.uuid4()))
                self._sessions[session.id] = session
            if oid not in session.oids:
                session.oids.append(oid)
            return session

    def sign_out(self, session_id: str | None) -> None:
        with self._lock:
            if session_id:
                self._sessions.pop(session_id, None)

    # --- authorization codes ---------------------------------------------------
    def issue_code(self, grant: AuthorizationGrant) -> str:
        code = secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = _Entry(grant, time.time() + CODE_LIFETIME)
        return code

    def redeem_code(self, code: str) -> tuple[AuthorizationGrant | None, str]:
        """The code's grant and "ok", or None and why not ("unknown", "expired", "redeemed")."""
        with self._lock:
            entry = self._codes.get(code)
            if entry is None:
                return None, "unknown"
            if entry.redeemed:
                return None, "redeemed"
            entry.redeemed = True  # single use, even when the redemption then fails
            if entry.expires_at < time.time():
                return None, "expired"
            return entry.grant, "ok"

    # --- refresh tokens --------------------------------------------------------
    def issue_refresh_token(self, grant: AuthorizationGrant) -> str:
        token = secrets.token_urlsafe(64)
        with self._lock:
            self._refresh_tokens[token] = _Entry(grant, time.time() + SPA_REFRESH_TOKEN_LIFETIME)
        return token

    def refresh(self, token: str) -> tuple[AuthorizationGrant | None, str]:
        """The grant behind a refresh token, or None and why not ("unknown", "expired")."""
        with self._lock:
            entry = self._refresh_tokens.get(token)
        if entry is None:
            return None, "unknown"
        if entry.expires_at < time.time():
            return None, "expired"
        return entry.grant, "ok"
