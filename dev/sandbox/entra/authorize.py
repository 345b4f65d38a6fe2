"""``/{tenant}/oauth2/v2.0/authorize`` and ``/logout``: the browser side of auth code + PKCE.

Validate before you redirect: an unknown tenant, client or redirect URI gets a plain 400
page, because redirecting anywhere on the say-so of an unverified request is how open
redirectors are made. Once the client and its redirect URI are trusted, every later
problem goes back to the client as ``error`` + ``error_description`` + ``state`` in the
response mode it asked for, which is where MSAL looks for it.

GET shows the account picker (a form); its POST signs the chosen account in (a session
cookie) and redirects with ``code``, ``client_info`` and ``state``. ``prompt=none``
answers from the session alone, as MSAL's silent iframe needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .authority import Authority, resolve_authority
from .directory import AppRegistration, Directory, Tenant, User
from .errors import (
    APP_NOT_FOUND,
    LOGIN_REQUIRED,
    MISSING_PARAMETER,
    PKCE_METHOD,
    PKCE_REQUIRED,
    REDIRECT_URI_MISMATCH,
    SELECT_ACCOUNT,
    TENANT_NOT_FOUND,
    UNSUPPORTED_RESPONSE_MODE,
    UNSUPPORTED_RESPONSE_TYPE,
    USER_DISABLED,
    USER_NOT_FOUND,
    BadAuthorizeRequest,
    OAuthError,
)
from .forms import form_params
from .grants import AuthorizationGrant, GrantStore, Session
from .pages import account_picker, error_page, signed_out_page
from .scopes import resolve_scopes
from .tokens import TokenIssuer, client_info

SESSION_COOKIE = "sandbox_entra_session"
RESPONSE_MODES = ("query", "fragment")


@dataclass(frozen=True)
class AuthorizeRequest:
    """An authorize request whose client and redirect URI have been verified."""

    authority: Authority
    client: AppRegistration
    redirect_uri: str
    params: dict[str, str]

    def param(self, name: str) -> str | None:
        return self.params.get(name) or None

    @property
    def response_mode(self) -> str:
        # Entra's default for response_type=code is query; MSAL browser asks for fragment.
        mode = self.params.get("response_mode") or "query"
        return mode if mode in RESPONSE_MODES else "query"

    def redirect(self, values: dict[str, str | None]) -> RedirectResponse:
        answer = {"state": self.param("state"), **values}
        encoded = urlencode({k: v for k, v in answer.items() if v is not None})
        if self.response_mode == "fragment":
            url = f"{self.redirect_uri}#{encoded}"
        else:
            url = f"{self.redirect_uri}{'&' if '?' in self.redirect_uri else '?'}{encoded}"
        return RedirectResponse(url, 302, headers={"Cache-Control": "no-store"})


def parse_authorize_request(
    segment: str, params: dict[str, str], directory: Directory
) -> AuthorizeRequest:
    """Trust the client and redirect URI, or raise :class:`BadAuthorizeRequest`."""
    authority = resolve_authority(segment, directory)
    if authority is None:
        raise BadAuthorizeRequest(TENANT_NOT_FOUND, tenant=segment)
    client_id = params.get("client_id", "")
    if not client_id:
        raise BadAuthorizeRequest(MISSING_PARAMETER, name="client_id")
    client = directory.app(client_id)
    if client is None or not client.is_spa:
        raise BadAuthorizeRequest(APP_NOT_FOUND, client_id=client_id)
    redirect_uri = params.get("redirect_uri", "")
    if not client.accepts_redirect_uri(redirect_uri):
        raise BadAuthorizeRequest(
            REDIRECT_URI_MISMATCH, redirect_uri=redirect_uri, client_id=client_id
        )
    return AuthorizeRequest(authority, client, redirect_uri, params)


def check_protocol(request: AuthorizeRequest, directory: Directory) -> None:
    """The OAuth checks whose failures go back to the client; raise :class:`OAuthError`."""
    mode = request.params.get("response_mode", "query")
    if mode not in RESPONSE_MODES:
        raise OAuthError(UNSUPPORTED_RESPONSE_MODE, mode=mode)
    if request.param("response_type") != "code":
        raise OAuthError(UNSUPPORTED_RESPONSE_TYPE, value=request.params.get("response_type", ""))
    challenge = request.param("code_challenge")
    if challenge is None:
        raise OAuthError(PKCE_REQUIRED)
    if request.param("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
        raise OAuthError(PKCE_METHOD)
    resolve_scopes(request.params.get("scope", ""), directory)


def signed_in_account(
    request: AuthorizeRequest, session: Session | None, directory: Directory
) -> tuple[Tenant, User] | None:
    """The session's account to answer with, None to show the picker; raises for prompt=none."""
    prompt = request.param("prompt")
    if prompt in ("login", "select_account"):
        return None
    sid = request.param("sid")
    candidates: list[tuple[Tenant, User]] = []
    if session is not None and (sid is None or sid == session.id):
        found = (directory.find_user(oid) for oid in session.oids)
        candidates = [f for f in found if f is not None and request.authority.allows(f[0])]
    hint = (request.param("login_hint") or "").lower()
    if hint:
        candidates = [(t, u) for t, u in candidates if u.user_principal_name.lower() == hint]
    if prompt == "none":
        if not candidates:
            raise OAuthError(LOGIN_REQUIRED)
        if len(candidates) > 1:
            raise OAuthError(SELECT_ACCOUNT)
        return candidates[0]
    # With no prompt, a hinted account that is already signed in continues silently (SSO).
    return candidates[0] if hint and len(candidates) == 1 else None


def authorize_routes(issuer: TokenIssuer, grants: GrantStore) -> list[Route]:
    directory = issuer.directory

    def complete(request: Request, auth: AuthorizeRequest, tenant: Tenant, user: User) -> Response:
        session = grants.sign_in(request.cookies.get(SESSION_COOKIE), user.oid)
        grant = AuthorizationGrant(
            client_id=auth.client.client_id,
            tid=tenant.tid,
            oid=user.oid,
            scope=auth.params.get("scope", ""),
            redirect_uri=auth.redirect_uri,
            code_challenge=auth.params["code_challenge"],
            nonce=auth.param("nonce"),
            session_id=session.id,
        )
        response = auth.redirect({
            "code": grants.issue_code(grant),
            "client_info": client_info(tenant, user),
            "session_state": session.id,
        })
        # SameSite=None (https only) lets MSAL's silent iframe send it. From an http portal
        # this https issuer is cross-site, so browsers that block third-party cookies
        # (Chromium does) withhold it and prompt=none answers login_required, as Entra would.
        secure = request.url.scheme == "https"
        response.set_cookie(
            SESSION_COOKIE, session.id, path="/", httponly=True, secure=secure,
            samesite="none" if secure else "lax",
        )
        return response

    def picked(auth: AuthorizeRequest, oid: str) -> tuple[Tenant, User]:
        found = directory.find_user(oid)
        if found is None or not auth.authority.allows(found[0]):
            raise BadAuthorizeRequest(USER_NOT_FOUND)
        if not found[1].sign_in_allowed:
            raise BadAuthorizeRequest(USER_DISABLED)
        return found

    async def authorize(request: Request) -> Response:
        if request.method == "GET":
            params = dict(request.query_params)
        else:
            params = await form_params(request)
        try:
            auth = parse_authorize_request(request.path_params["tenant"], params, directory)
            try:
                check_protocol(auth, directory)
                if request.method == "POST":
                    return complete(request, auth, *picked(auth, params.get("account", "")))
                session = grants.session(request.cookies.get(SESSION_COOKIE))
                account = signed_in_account(auth, session, directory)
            except OAuthError as exc:
                return auth.redirect({"error": exc.error, "error_description": exc.description})
        except BadAuthorizeRequest as exc:
            return error_page(str(exc))
        if account is not None:
            return complete(request, auth, *account)
        hidden = {k: v for k, v in params.items() if k != "account"}
        return account_picker(
            request.url.path, hidden, auth.authority.tenants(directory),
            auth.client.display_name, auth.param("login_hint"),
        )

    async def logout(request: Request) -> Response:
        grants.sign_out(request.cookies.get(SESSION_COOKIE))
        target = request.query_params.get("post_logout_redirect_uri", "")
        if target and any(app.accepts_redirect_uri(target) for app in directory.apps):
            response: Response = RedirectResponse(target, 302)
        else:
            response = signed_out_page()
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return [
        Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/logout", logout, methods=["GET"]),
    ]
