"""HTTP to admin-supplied URLs without letting them reach inside the stamp's network (SSRF).

    http = SafeHttpClient(allow_loopback_http=settings.local_mode)
    response = http.get("https://fhir-ehr.cerner.com/r4/{tenant}/metadata", accept=FHIR_JSON)
    answer = http.post(token_url, form={"grant_type": "authorization_code", ...})

Every FHIR base URL and every endpoint discovered from it (authorize, token, JWKS) was typed
by an admin or named by a server an admin chose, so the connector's own calls to them (a GET
of metadata, a POST of a code to the token endpoint, a FHIR read with a launch's token) all
go through this client.

For every hop (the URL, then each redirect, at most ``max_redirects``):

1. the scheme must be https; http only to loopback, and only when the client was built with
   ``allow_loopback_http`` (local mode) *and* the call allows loopback (``allow_loopback``);
2. the host is resolved here, once, by the injected resolver; every address it returns must
   be public (see ``addresses``); one refused address refuses the host;
3. the request goes to a checked address itself, so nothing below resolves the name again:
   a DNS answer that changes between check and connect (DNS rebinding) cannot take effect.

How the pinning is done: the request URL's host is rewritten to the checked IP, the ``Host``
header keeps the name, and httpx's documented ``sni_hostname`` request extension makes httpcore
send the name in TLS SNI and verify the certificate against the name (``server_hostname``),
not the IP. Chosen over a custom httpcore network backend because it uses public httpx API
only (``HTTPTransport`` takes no backend; swapping its pool means touching internals), and
because any transport, ``httpx.MockTransport`` included, then sees exactly what goes on the
wire: tests assert the IP, the Host header and the SNI name without patching anything.

Connections are pooled per (checked address, port, host name): httpcore pools by origin,
which after the rewrite is the IP, so one pool per address alone could let a connection
verified for one name carry a request for another name served from the same address. With
the name in the key, a pooled connection only ever serves the name it was verified for, and a
launch's several calls to the EHR reuse one TLS connection (and one SSL context: loading the
CA bundle costs tens of milliseconds). Transports come from ``transport_factory``.

Bounded everything: connect and read timeouts per hop, a total deadline across hops (also
checked between body chunks, against slow-drip servers), a body size limit counted after
content decoding (against compression bombs), only GET, no cookies, no proxies from the
environment, no credentials in URLs. GET, POST and PATCH only. A POST is never redirected (a 307 would replay a code
or a client secret to another host): its redirect comes back as a response.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpx

from connector import telemetry
from connector.adapters.net.addresses import Address, is_loopback, parse_address, refusal_reason
from connector.adapters.net.headers import ascii_int
from connector.adapters.net.errors import (
    OutboundConnectionFailed,
    OutboundRequestRefused,
    OutboundTimeout,
    ResponseTooLarge,
    TooManyRedirects,
)
from connector.adapters.net.resolver import Resolver, SystemResolver
from connector.errors import ConnectorError, InvalidUpstreamData, UpstreamError

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_POOLED_DESTINATIONS = 128
USER_AGENT = "virtual-visits-connector"
# What a host name may look like when we repeat it in a message (httpx hands us IDNA/ASCII).
_PRINTABLE_HOST = re.compile(r"[A-Za-z0-9.:\-]{1,253}")


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 5.0
    read_timeout: float = 5.0
    total_timeout: float = 10.0  # per get(), across redirects and body reading
    max_response_bytes: int = 2 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True)
class Destination:
    """A host that passed the checks, and the addresses a request to it may use, in order."""

    host: str
    port: int
    addresses: tuple[str, ...]
    is_loopback: bool


@dataclass(frozen=True)
class SafeResponse:
    status_code: int
    content_type: str  # media type only, lower-case ("application/fhir+json"), "" when absent
    content: bytes
    url: str  # the URL that answered, after redirects (with the host name, not the IP)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not."""
        return json.loads(self.content)


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def default_transport() -> httpx.BaseTransport:
    """The real network: certificates verified against certifi's roots (one SSL context per
    process), no retries, HTTP/1.1."""
    return httpx.HTTPTransport(retries=0, verify=_ssl_context())


class SafeHttpClient:
    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        transport_factory: Callable[[], httpx.BaseTransport] = default_transport,
        allow_loopback_http: bool = False,
        limits: FetchLimits = FetchLimits(),
    ) -> None:
        """``allow_loopback_http`` is for local mode only: loopback addresses become reachable
        (over http or https) and nothing else private does. It is a ceiling: a call can only
        narrow it (``allow_loopback=False``), never widen it."""
        self._resolve = resolver or SystemResolver(timeout=limits.connect_timeout)
        self._new_transport = transport_factory
        self.allow_loopback_http = allow_loopback_http
        self.limits = limits
        self._clients: OrderedDict[tuple[str, str, int, str], httpx.Client] = OrderedDict()
        self._clients_lock = threading.Lock()

    def _client(self, scheme: str, address: str, port: int, host: str) -> httpx.Client:
        """The pooled client for one checked address and the name it is verified for."""
        key = (scheme, address, port, host)
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = httpx.Client(transport=self._new_transport(), trust_env=False, follow_redirects=False,
                                      cookies=_no_cookies())
                self._clients[key] = client
                if len(self._clients) > MAX_POOLED_DESTINATIONS:
                    # Not closed here: another thread may be using it; it closes when collected.
                    self._clients.popitem(last=False)
            self._clients.move_to_end(key)
            return client

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def check_destination(self, url: str, *, allow_loopback: bool = True) -> Destination:
        """Resolve and check ``url``'s host without sending anything; raises like :meth:`get`."""
        return self._check(_parse_url(url), allow_loopback=allow_loopback, redirected=False)

    def get(
        self, url: str, *, accept: str = "application/json", headers: Mapping[str, str] | None = None,
        allow_loopback: bool = True,
    ) -> SafeResponse:
        """GET ``url``, following up to ``max_redirects`` redirects, each checked afresh.

        Any status comes back as a response (the caller judges a 404); refusals, timeouts and
        network failures raise members of ``connector.adapters.net.errors``. ``headers`` (an
        Authorization header, say) go to the first hop only, never to a redirect's host."""
        deadline = time.monotonic() + self.limits.total_timeout
        current = _parse_url(url)
        extra = dict(headers or {})
        with _traced("GET", current) as call:
            for hop in range(self.limits.max_redirects + 1):
                destination = self._check(current, allow_loopback=allow_loopback, redirected=hop > 0)
                request = _Outgoing("GET", accept, extra if hop == 0 else {}, None)
                outcome = self._fetch(current, destination, request, deadline, follow=True)
                if isinstance(outcome, SafeResponse):
                    call.set(status=outcome.status_code, redirects=hop)
                    return outcome
                current = _redirect_target(current, outcome)
            raise TooManyRedirects(
                f"{_shown(current.host)} redirected more than {self.limits.max_redirects} times."
            )

    def post(
        self, url: str, *, form: Mapping[str, str] | None = None, body: bytes | None = None,
        content_type: str | None = None, accept: str = "application/json",
        headers: Mapping[str, str] | None = None, allow_loopback: bool = True,
    ) -> SafeResponse:
        """POST a form (``application/x-www-form-urlencoded``) or a ``body`` of ``content_type``
        to ``url``. Never follows a redirect: it comes back as the response."""
        if (form is None) == (body is None):
            raise ValueError("post() takes either form or body")
        if form is not None:
            body, content_type = _urlencoded(form), "application/x-www-form-urlencoded"
        return self._send_once("POST", url, body, content_type, accept, headers, allow_loopback)

    def patch(
        self, url: str, *, body: bytes, content_type: str, accept: str = "application/json",
        headers: Mapping[str, str] | None = None, allow_loopback: bool = True,
    ) -> SafeResponse:
        """PATCH ``body`` to ``url`` (a FHIR JSON Patch, say). Never follows a redirect."""
        return self._send_once("PATCH", url, body, content_type, accept, headers, allow_loopback)

    def _send_once(self, method: str, url: str, body: bytes | None, content_type: str | None, accept: str,
                   headers: Mapping[str, str] | None, allow_loopback: bool) -> SafeResponse:
        deadline = time.monotonic() + self.limits.total_timeout
        target = _parse_url(url)
        with _traced(method, target) as call:
            destination = self._check(target, allow_loopback=allow_loopback, redirected=False)
            extra = httpx.Headers(headers or {})
            if content_type:
                extra.pop("content-type", None)  # ours, whatever case the caller used
                extra["Content-Type"] = content_type
            outcome = self._fetch(target, destination, _Outgoing(method, accept, extra, body), deadline, follow=False)
            assert isinstance(outcome, SafeResponse)  # follow=False: a redirect is a response
            call.set(status=outcome.status_code)
            return outcome

    # -- checking ---------------------------------------------------------------------------

    def _check(self, url: httpx.URL, *, allow_loopback: bool, redirected: bool) -> Destination:
        loopback_ok = self.allow_loopback_http and allow_loopback
        host = url.host
        subject = f"The server redirected to {_shown(host)}, which" if redirected else _shown(host)
        if url.scheme not in ("https", "http"):
            raise OutboundRequestRefused(
                "The server redirected to a URL that is not https." if redirected
                else "Only https URLs are allowed."
            )
        if url.scheme == "http" and not loopback_ok:
            raise OutboundRequestRefused(
                "The server redirected to a plain http URL; only https is allowed." if redirected
                else "Only https URLs are allowed."
            )
        port = url.port or (443 if url.scheme == "https" else 80)
        literal, addresses = self._addresses(host, port)
        verb = "is" if literal else "resolves to"
        for address in addresses:
            reason = refusal_reason(address, allow_loopback=loopback_ok)
            if reason:
                raise OutboundRequestRefused(
                    f"{subject} {verb} {reason}; only public addresses may be reached."
                )
        all_loopback = all(is_loopback(a) for a in addresses)
        if url.scheme == "http" and not all_loopback:
            raise OutboundRequestRefused(
                f"{subject} {verb} a non-loopback address: http is accepted only for loopback "
                "in local mode; use https."
            )
        return Destination(host, port, tuple(str(a) for a in addresses), all_loopback)

    def _addresses(self, host: str, port: int) -> tuple[bool, list[Address]]:
        """(is the host an IP literal, its addresses). A literal is never sent to DNS."""
        try:
            return True, [parse_address(host)]
        except ValueError:
            pass
        try:
            found = list(self._resolve(host, port))
            addresses = [parse_address(text) for text in found]
        except ConnectorError:
            raise
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise OutboundConnectionFailed(f"The host name {_shown(host)} could not be resolved.")
        return False, addresses

    # -- fetching ---------------------------------------------------------------------------

    def _fetch(
        self, url: httpx.URL, destination: Destination, outgoing: "_Outgoing", deadline: float, *, follow: bool
    ) -> SafeResponse | str:
        """The response, or the Location of a redirect. Tries the checked addresses in order
        while connecting fails (e.g. an IPv6 address on a host without IPv6 routing)."""
        failure: ConnectorError | None = None
        for address in destination.addresses:
            try:
                return self._fetch_from(address, url, outgoing, deadline, follow)
            except _ConnectFailed as exc:
                failure = exc.error
        assert failure is not None  # addresses is never empty
        raise failure

    def _fetch_from(
        self, address: str, url: httpx.URL, outgoing: "_Outgoing", deadline: float, follow: bool
    ) -> SafeResponse | str:
        host = url.host
        request_url = url.copy_with(host=address)
        headers = httpx.Headers(outgoing.headers)
        for name in ("host", "accept", "user-agent"):  # ours, whatever case the caller used
            headers.pop(name, None)
        headers.update({"Host": url.netloc.decode("ascii"), "Accept": outgoing.accept, "User-Agent": USER_AGENT})
        client = self._client(url.scheme, address, url.port or (443 if url.scheme == "https" else 80), host)
        request = client.build_request(
            outgoing.method,
            request_url,
            headers=headers,
            content=outgoing.body,
            timeout=self._timeout(host, deadline),
            extensions={"sni_hostname": host},
        )
        try:
            response = client.send(request, stream=True)
        except httpx.HTTPError as exc:
            error = self._translate(exc, host)
            if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) and not _tls_failure(exc):
                raise _ConnectFailed(error) from None
            raise error from None
        try:
            if follow and response.status_code in REDIRECT_STATUSES and response.headers.get("location"):
                return response.headers["location"]
            content = self._read_bounded(response, host, deadline)
        except httpx.HTTPError as exc:
            raise self._translate(exc, host) from None
        finally:
            response.close()
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        kept = {name.lower(): value for name, value in response.headers.items() if name.lower() in _KEPT_HEADERS}
        return SafeResponse(response.status_code, content_type, content, str(url), kept)

    def _timeout(self, host: str, deadline: float) -> httpx.Timeout:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._total_timeout(host)
        connect = min(self.limits.connect_timeout, remaining)
        read = min(self.limits.read_timeout, remaining)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    def _read_bounded(self, response: httpx.Response, host: str, deadline: float) -> bytes:
        limit = self.limits.max_response_bytes
        too_large = ResponseTooLarge(f"{_shown(host)} sent a response larger than {limit} bytes.")
        declared = response.headers.get("content-length", "")
        if (ascii_int(declared) or 0) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():  # decoded bytes: the limit holds after gunzip too
            size += len(chunk)
            if size > limit:
                raise too_large
            if time.monotonic() > deadline:
                raise self._total_timeout(host)
            chunks.append(chunk)
        return b"".join(chunks)

    def _total_timeout(self, host: str) -> OutboundTimeout:
        return OutboundTimeout(
            f"{_shown(host)} did not finish answering within {self.limits.total_timeout:g} seconds."
        )

    def _translate(self, exc: httpx.HTTPError, host: str) -> ConnectorError:
        """An httpx error as a sentence of ours (httpx's own text may quote addresses)."""
        shown = _shown(host)
        if isinstance(exc, httpx.ConnectTimeout):
            return OutboundTimeout(
                f"{shown} did not accept a connection within {self.limits.connect_timeout:g} seconds."
            )
        if isinstance(exc, httpx.TimeoutException):
            return OutboundTimeout(f"{shown} did not answer within {self.limits.read_timeout:g} seconds.")
        tls = _tls_failure(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            return OutboundConnectionFailed(f"The TLS certificate of {shown} could not be verified.")
        if tls is not None:
            return OutboundConnectionFailed(f"The TLS handshake with {shown} failed.")
        if isinstance(exc, httpx.ConnectError):
            return OutboundConnectionFailed(f"Could not connect to {shown}.")
        if isinstance(exc, httpx.DecodingError):
            return InvalidUpstreamData(f"{shown} sent a response that could not be decoded.")
        return UpstreamError(f"The connection to {shown} failed ({type(exc).__name__}).")


@dataclass(frozen=True)
class _Outgoing:
    method: str
    accept: str
    headers: Mapping[str, str]
    body: bytes | None


# Response headers callers may need (versions, throttling, auth challenges); nothing else is kept.
_KEPT_HEADERS = frozenset({"etag", "location", "retry-after", "www-authenticate", "last-modified"})


def _no_cookies() -> http.cookiejar.CookieJar:
    """A jar that keeps nothing: a pooled client must not carry one server's cookies onward."""
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def _urlencoded(form: Mapping[str, str]) -> bytes:
    from urllib.parse import urlencode

    return urlencode(list(form.items())).encode("ascii")


class _ConnectFailed(Exception):
    """Connecting to one address failed; the next checked address may still work."""

    def __init__(self, error: ConnectorError) -> None:
        super().__init__(error.message)
        self.error = error


def _traced(method: str, url: httpx.URL):
    """The call's telemetry span: the method, the host and the URL without its query (a code, a
    search's patient id), never a header or a body; the status is added when the answer comes."""
    shown = f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"
    return telemetry.span(f"{method} {url.host}", method=method, host=url.host, url=shown)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise OutboundRequestRefused("The URL is not a valid absolute URL.") from None
    if not parsed.is_absolute_url or not parsed.host:
        raise OutboundRequestRefused("The URL is not a valid absolute URL.")
    if parsed.userinfo:
        # httpx would send these as Basic credentials to whatever host the URL names.
        raise OutboundRequestRefused("URLs with a user name or password are not allowed.")
    return parsed


def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
    try:
        target = current.join(location)
    except httpx.InvalidURL:
        raise OutboundRequestRefused("The server redirected to an invalid URL.") from None
    if target.userinfo:
        raise OutboundRequestRefused("The server redirected to a URL with a user name or password.")
    return target


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error at the root of an httpx error, if any (httpx and httpcore chain causes)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _shown(host: str) -> str:
    return host if _PRINTABLE_HOST.fullmatch(host) else "the host"
