"""The SSRF-safe client: address rules, pinning to the checked IP, redirects, limits.

The network is faked at the transport (``httpx.MockTransport``) and the resolver is injected,
so every test sees exactly what would have gone on the wire. A few tests use real loopback
sockets to prove the real transport connects to the pinned address with the name kept for the
Host header and the TLS certificate check.
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from connector.adapters.net import (
    FetchLimits,
    OutboundConnectionFailed,
    OutboundRequestRefused,
    OutboundTimeout,
    ResponseTooLarge,
    SafeHttpClient,
    SystemResolver,
    TooManyRedirects,
)
from connector.adapters.net.addresses import parse_address, refusal_reason
from connector.errors import UnprocessableInput, UpstreamError, UpstreamUnavailable

PUBLIC_V4 = "93.184.216.34"
OTHER_PUBLIC_V4 = "151.101.1.140"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
FHIR_HOST = "fhir.example.org"


class FakeResolver:
    """Answers from a table; a list of lists answers differently on each call (DNS rebinding)."""

    def __init__(self, answers: dict[str, list[str] | list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        answer = self.answers.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answer and isinstance(answer[0], list):
            asked = sum(1 for h, _ in self.calls if h == host)
            return answer[min(asked, len(answer)) - 1]  # type: ignore[return-value]
        return answer  # type: ignore[return-value]


class FakeNetwork:
    """A MockTransport that answers by (Host header, path) and records every request it gets."""

    def __init__(self, routes: dict[tuple[str, str], httpx.Response | Callable[[httpx.Request], httpx.Response]]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.headers["host"], request.url.path))
        if route is None:
            return httpx.Response(404)
        return route(request) if callable(route) else route

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self._handle)


def client_for(
    network: FakeNetwork, resolver: FakeResolver | None = None, **options
) -> SafeHttpClient:
    resolver = resolver or FakeResolver({FHIR_HOST: [PUBLIC_V4]})
    return SafeHttpClient(resolver=resolver, transport_factory=network.transport, **options)


def ok(body: bytes = b'{"resourceType": "CapabilityStatement"}') -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "application/fhir+json"})


def redirect(location: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"location": location})


# -- the address rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("::ffff:7f00:1", "loopback"),  # the same, written in hex
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),  # unique local (AWS's IPv6 metadata address)
        ("fc00::1", "private"),
        ("169.254.169.254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 well-known prefix + 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 + 127.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "shared"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
        ("2001::1", "reserved"),  # Teredo
        ("192.0.2.10", "documentation"),
        ("2001:db8::1", "documentation"),
        ("168.63.129.16", "Azure platform"),
    ],
)
def test_non_public_addresses_are_refused_with_their_category(address: str, reason: str):
    assert reason in (refusal_reason(parse_address(address)) or "")


@pytest.mark.parametrize(
    "address", [PUBLIC_V4, "8.8.8.8", PUBLIC_V6, "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_pass(address: str):
    assert refusal_reason(parse_address(address)) is None


def test_allowing_loopback_lets_loopback_through_and_nothing_else():
    assert refusal_reason(parse_address("127.0.0.1"), allow_loopback=True) is None
    assert refusal_reason(parse_address("::1"), allow_loopback=True) is None
    assert refusal_reason(parse_address("10.0.0.1"), allow_loopback=True) == "a private network address"
    assert "metadata" in refusal_reason(parse_address("169.254.169.254"), allow_loopback=True)


# -- refusing before anything is sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/r4/metadata", "is a loopback address"),
        ("https://[::1]/r4/metadata", "is a loopback address"),
        ("https://[::ffff:127.0.0.1]/r4/metadata", "is a loopback address"),
        ("https://10.1.2.3/metadata", "is a private network address"),
        ("https://172.16.0.10/metadata", "is a private network address"),
        ("https://172.31.0.10:8443/metadata", "is a private network address"),
        ("https://192.168.0.1/metadata", "is a private network address"),
        ("https://169.254.169.254/metadata/instance", "is the cloud instance metadata address"),
        ("https://[64:ff9b::a9fe:a9fe]/latest", "is the cloud instance metadata address"),
        ("https://0.0.0.0/metadata", "is an unspecified address"),
        ("https://[fe80::1]/metadata", "is a link-local address"),
    ],
)
def test_non_public_ip_literals_are_refused_without_dns_or_a_request(url: str, reason: str):
    network, resolver = FakeNetwork({}), FakeResolver({})
    client = client_for(network, resolver)
    with pytest.raises(OutboundRequestRefused) as raised:
        client.get(url)
    assert reason in raised.value.message
    assert raised.value.message.endswith("only public addresses may be reached.")
    assert isinstance(raised.value, UnprocessableInput) and raised.value.http_status == 422
    assert network.requests == [] and resolver.calls == []


@pytest.mark.parametrize("private", ["10.0.0.5", "172.20.1.1", "192.168.10.10", "127.0.0.1", "::1", "169.254.169.254"])
def test_a_public_name_resolving_to_a_private_address_is_refused(private: str):
    network = FakeNetwork({(FHIR_HOST, "/metadata"): ok()})
    client = client_for(network, FakeResolver({FHIR_HOST: [private]}))
    with pytest.raises(OutboundRequestRefused) as raised:
        client.get(f"https://{FHIR_HOST}/metadata")
    assert raised.value.message.startswith(f"{FHIR_HOST} resolves to ")
    # The resolved address is not repeated: the client must not become a probe of internal DNS.
    assert private not in raised.value.message
    assert network.requests == []


def test_one_private_address_among_public_ones_refuses_the_host():
    network = FakeNetwork({(FHIR_HOST, "/metadata"): ok()})
    client = client_for(network, FakeResolver({FHIR_HOST: [PUBLIC_V4, "10.0.0.5"]}))
    with pytest.raises(OutboundRequestRefused, match="private network address"):
        client.get(f"https://{FHIR_HOST}/metadata")
    assert network.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://{FHIR_HOST}/metadata", "Only https URLs are allowed."),
        (f"ftp://{FHIR_HOST}/metadata", "Only https URLs are allowed."),
        ("file:///etc/passwd", "not a valid absolute URL"),
        ("/r4/metadata", "not a valid absolute URL"),
        (f"https://admin:secret@{FHIR_HOST}/metadata", "user name or password"),
    ],
)
def test_urls_that_are_not_plain_https_are_refused_before_dns(url: str, message: str):
    network, resolver = FakeNetwork({}), FakeResolver({FHIR_HOST: [PUBLIC_V4]})
    with pytest.raises(OutboundRequestRefused, match=message):
        client_for(network, resolver).get(url)
    assert resolver.calls == [] and network.requests == []


# -- pinning: connect to the checked address ---------------------------------------------------


def test_the_request_goes_to_the_checked_ip_with_the_name_in_host_and_sni():
    network = FakeNetwork({(f"{FHIR_HOST}:8443", "/r4/abc/metadata"): ok()})
    response = client_for(network).get(f"https://{FHIR_HOST}:8443/r4/abc/metadata", accept="application/fhir+json")

    (sent,) = network.requests
    assert (sent.url.scheme, sent.url.host, sent.url.port) == ("https", PUBLIC_V4, 8443)
    assert sent.headers["host"] == f"{FHIR_HOST}:8443"
    assert sent.extensions["sni_hostname"] == FHIR_HOST  # TLS SNI and certificate name
    assert sent.headers["accept"] == "application/fhir+json"
    assert sent.method == "GET"
    assert response.status_code == 200 and response.content_type == "application/fhir+json"
    assert response.url == f"https://{FHIR_HOST}:8443/r4/abc/metadata"  # the name, not the IP
    assert response.json() == {"resourceType": "CapabilityStatement"}


def test_ipv6_addresses_are_pinned_in_brackets():
    network = FakeNetwork({(FHIR_HOST, "/metadata"): ok()})
    client_for(network, FakeResolver({FHIR_HOST: [PUBLIC_V6]})).get(f"https://{FHIR_HOST}/metadata")
    (sent,) = network.requests
    assert sent.url.host == PUBLIC_V6 and f"[{PUBLIC_V6}]" in str(sent.url)
    assert sent.headers["host"] == FHIR_HOST


def test_dns_rebinding_cannot_switch_the_address_after_the_check():
    """The resolver answers public first and loopback afterwards: the one request made uses the
    public answer it checked, and nothing resolves the name a second time for that request."""
    network = FakeNetwork({(FHIR_HOST, "/metadata"): ok()})
    resolver = FakeResolver({FHIR_HOST: [[PUBLIC_V4], ["127.0.0.1"]]})
    client = client_for(network, resolver)

    client.get(f"https://{FHIR_HOST}/metadata")
    assert resolver.calls == [(FHIR_HOST, 443)]
    assert [r.url.host for r in network.requests] == [PUBLIC_V4]

    # The next request resolves afresh, sees the rebound answer, and is refused.
    with pytest.raises(OutboundRequestRefused, match="loopback"):
        client.get(f"https://{FHIR_HOST}/metadata")
    assert len(network.requests) == 1


def test_when_connecting_to_one_checked_address_fails_the_next_checked_one_is_tried():
    def v6_unreachable(request: httpx.Request) -> httpx.Response:
        if request.url.host == PUBLIC_V6:
            raise httpx.ConnectError("Network is unreachable")
        return ok()

    network = FakeNetwork({(FHIR_HOST, "/metadata"): v6_unreachable})
    client = client_for(network, FakeResolver({FHIR_HOST: [PUBLIC_V6, PUBLIC_V4]}))
    assert client.get(f"https://{FHIR_HOST}/metadata").status_code == 200
    assert [r.url.host for r in network.requests] == [PUBLIC_V6, PUBLIC_V4]


def test_when_no_checked_address_accepts_a_connection_the_failure_is_a_sentence():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused to 93.184.216.34")

    network = FakeNetwork({(FHIR_HOST, "/metadata"): refuse})
    with pytest.raises(OutboundConnectionFailed) as raised:
        client_for(network).get(f"https://{FHIR_HOST}/metadata")
    assert raised.value.message == f"Could not connect to {FHIR_HOST}."
    assert isinstance(raised.value, UpstreamError) and raised.value.http_status == 502


@pytest.mark.parametrize("failure", [socket.gaierror(-2, "Name or service not known"), None])
def test_a_name_that_does_not_resolve_fails_with_a_sentence(failure):
    def resolver(host: str, port: int) -> list[str]:
        if failure:
            raise failure
        return []

    network = FakeNetwork({})
    client = SafeHttpClient(resolver=resolver, transport_factory=network.transport)
    with pytest.raises(OutboundConnectionFailed, match=f"The host name {FHIR_HOST} could not be resolved."):
        client.get(f"https://{FHIR_HOST}/metadata")
    assert network.requests == []


def test_check_destination_resolves_and_checks_without_sending():
    network, resolver = FakeNetwork({}), FakeResolver({FHIR_HOST: [PUBLIC_V4, PUBLIC_V6]})
    destination = client_for(network, resolver).check_destination(f"https://{FHIR_HOST}/r4")
    assert destination.addresses == (PUBLIC_V4, PUBLIC_V6)
    assert destination.is_loopback is False and destination.port == 443
    assert network.requests == []


# -- redirects: each hop is checked again -------------------------------------------------------


def test_a_redirect_to_a_private_address_is_refused_before_it_is_followed():
    network = FakeNetwork({(FHIR_HOST, "/metadata"): redirect("https://internal.example.org/admin")})
    resolver = FakeResolver({FHIR_HOST: [PUBLIC_V4], "internal.example.org": ["192.168.1.10"]})
    with pytest.raises(OutboundRequestRefused) as raised:
        client_for(network, resolver).get(f"https://{FHIR_HOST}/metadata")
    assert raised.value.message == (
        "The server redirected to internal.example.org, which resolves to a private network "
        "address; only public addresses may be reached."
    )
    assert len(network.requests) == 1


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("https://169.254.169.254/metadata/instance?api-version=2021-02-01", "is the cloud instance metadata address"),
        ("https://[::ffff:127.0.0.1]/", "is a loopback address"),
        ("https://10.0.0.1/", "is a private network address"),
    ],
)
def test_a_redirect_to_a_private_ip_literal_is_refused(location: str, reason: str):
    network = FakeNetwork({(FHIR_HOST, "/metadata"): redirect(location, 307)})
    with pytest.raises(OutboundRequestRefused, match=reason):
        client_for(network).get(f"https://{FHIR_HOST}/metadata")
    assert len(network.requests) == 1


def test_a_redirect_to_plain_http_is_refused_even_to_a_public_host():
    network = FakeNetwork({(FHIR_HOST, "/metadata"): redirect(f"http://{FHIR_HOST}/metadata", 301)})
    with pytest.raises(OutboundRequestRefused, match="redirected to a plain http URL"):
        client_for(network).get(f"https://{FHIR_HOST}/metadata")
    assert len(network.requests) == 1


def test_redirects_to_public_hosts_are_followed_and_each_hop_is_pinned():
    network = FakeNetwork(
        {
            (FHIR_HOST, "/metadata"): redirect("/r4/metadata"),  # relative
            (FHIR_HOST, "/r4/metadata"): redirect("https://cdn.example.net/r4/metadata", 308),
            ("cdn.example.net", "/r4/metadata"): ok(b"{}"),
        }
    )
    resolver = FakeResolver({FHIR_HOST: [PUBLIC_V4], "cdn.example.net": [OTHER_PUBLIC_V4]})
    response = client_for(network, resolver).get(f"https://{FHIR_HOST}/metadata")
    assert response.url == "https://cdn.example.net/r4/metadata" and response.content == b"{}"
    assert [(r.url.host, r.headers["host"], r.extensions["sni_hostname"]) for r in network.requests] == [
        (PUBLIC_V4, FHIR_HOST, FHIR_HOST),
        (PUBLIC_V4, FHIR_HOST, FHIR_HOST),
        (OTHER_PUBLIC_V4, "cdn.example.net", "cdn.example.net"),
    ]
    assert [host for host, _ in resolver.calls] == [FHIR_HOST, FHIR_HOST, "cdn.example.net"]


def test_more_than_five_redirects_fail():
    network = FakeNetwork({(FHIR_HOST, "/loop"): redirect("/loop")})
    with pytest.raises(TooManyRedirects, match="redirected more than 5 times"):
        client_for(network).get(f"https://{FHIR_HOST}/loop")
    assert len(network.requests) == 6  # the request and five redirects followed


def test_a_redirect_status_is_returned_as_is_when_it_has_no_location():
    network = FakeNetwork({(FHIR_HOST, "/metadata"): httpx.Response(302)})
    assert client_for(network).get(f"https://{FHIR_HOST}/metadata").status_code == 302


# -- local mode: loopback over http, nothing else ------------------------------------------------


def test_local_mode_allows_http_to_loopback_only():
    network = FakeNetwork({("127.0.0.1:7071", "/r4/t/metadata"): ok(), ("localhost:7071", "/r4/t/metadata"): ok()})
    resolver = FakeResolver({"localhost": ["127.0.0.1", "::1"], FHIR_HOST: [PUBLIC_V4], "lan.example": ["10.0.0.9"]})
    client = client_for(network, resolver, allow_loopback_http=True)

    assert client.get("http://127.0.0.1:7071/r4/t/metadata").status_code == 200
    assert client.get("http://localhost:7071/r4/t/metadata").status_code == 200
    assert [(r.url.scheme, r.url.host) for r in network.requests] == [("http", "127.0.0.1"), ("http", "127.0.0.1")]
    assert client.check_destination("https://localhost:7071/").is_loopback is True

    with pytest.raises(OutboundRequestRefused, match="is a private network address"):
        client.get("http://10.0.0.9/metadata")
    with pytest.raises(OutboundRequestRefused, match="resolves to a private network address"):
        client.get("https://lan.example/metadata")
    with pytest.raises(OutboundRequestRefused, match="http is accepted only for loopback"):
        client.get(f"http://{FHIR_HOST}/metadata")
    with pytest.raises(OutboundRequestRefused, match="is the cloud instance metadata address"):
        client.get("http://169.254.169.254/metadata")
    assert len(network.requests) == 2


def test_loopback_allowance_is_a_ceiling_a_call_can_only_narrow():
    network = FakeNetwork({("127.0.0.1:7071", "/metadata"): ok()})
    local = client_for(network, allow_loopback_http=True)
    with pytest.raises(OutboundRequestRefused, match="Only https URLs are allowed."):
        local.get("http://127.0.0.1:7071/metadata", allow_loopback=False)
    with pytest.raises(OutboundRequestRefused, match="is a loopback address"):
        local.get("https://127.0.0.1:7071/metadata", allow_loopback=False)

    production = client_for(network, allow_loopback_http=False)
    with pytest.raises(OutboundRequestRefused, match="is a loopback address"):
        production.get("https://127.0.0.1:7071/metadata", allow_loopback=True)
    assert network.requests == []


def test_a_redirect_from_loopback_to_a_private_address_is_refused_in_local_mode():
    network = FakeNetwork({("127.0.0.1:7071", "/metadata"): redirect("http://192.168.0.2/metadata")})
    with pytest.raises(OutboundRequestRefused, match="redirected to 192.168.0.2, which is a private"):
        client_for(network, allow_loopback_http=True).get("http://127.0.0.1:7071/metadata")


# -- limits ------------------------------------------------------------------------------------


def test_a_declared_oversized_body_is_refused_before_reading():
    network = FakeNetwork(
        {(FHIR_HOST, "/metadata"): httpx.Response(200, headers={"content-length": str(3 * 1024 * 1024)}, content=b"")}
    )
    with pytest.raises(ResponseTooLarge, match="larger than 2097152 bytes"):
        client_for(network).get(f"https://{FHIR_HOST}/metadata")


def test_an_undeclared_oversized_body_is_cut_off_while_streaming():
    chunks_sent: list[int] = []

    def endless() -> Iterator[bytes]:
        for i in range(100):
            chunks_sent.append(i)
            yield b"x" * 65536

    network = FakeNetwork({(FHIR_HOST, "/metadata"): lambda r: httpx.Response(200, content=endless())})
    with pytest.raises(ResponseTooLarge):
        client_for(network, limits=FetchLimits(max_response_bytes=256 * 1024)).get(f"https://{FHIR_HOST}/metadata")
    assert len(chunks_sent) < 10  # stopped soon after the limit, not at the end of the stream


def test_the_size_limit_counts_decompressed_bytes():
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
    assert len(bomb) < 10_000
    response = httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"})
    network = FakeNetwork({(FHIR_HOST, "/metadata"): response})
    with pytest.raises(ResponseTooLarge):
        client_for(network).get(f"https://{FHIR_HOST}/metadata")


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (httpx.ConnectTimeout("timed out"), f"{FHIR_HOST} did not accept a connection within 5 seconds."),
        (httpx.ReadTimeout("timed out"), f"{FHIR_HOST} did not answer within 5 seconds."),
    ],
)
def test_timeouts_become_sentences(failure: Exception, message: str):
    def hang(request: httpx.Request) -> httpx.Response:
        raise failure

    network = FakeNetwork({(FHIR_HOST, "/metadata"): hang})
    with pytest.raises(OutboundTimeout) as raised:
        client_for(network).get(f"https://{FHIR_HOST}/metadata")
    assert raised.value.message == message
    assert isinstance(raised.value, UpstreamUnavailable) and raised.value.__cause__ is None


def test_the_total_deadline_stops_a_slow_drip_body():
    def drip() -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.05)
            yield b"{"

    network = FakeNetwork({(FHIR_HOST, "/metadata"): lambda r: httpx.Response(200, content=drip())})
    started = time.monotonic()
    with pytest.raises(OutboundTimeout, match="did not finish answering within 0.3 seconds"):
        client_for(network, limits=FetchLimits(total_timeout=0.3)).get(f"https://{FHIR_HOST}/metadata")
    assert time.monotonic() - started < 1.0


def test_the_per_hop_timeouts_are_handed_to_the_transport():
    network = FakeNetwork({(FHIR_HOST, "/metadata"): ok()})
    client_for(network, limits=FetchLimits(connect_timeout=2, read_timeout=3)).get(f"https://{FHIR_HOST}/metadata")
    timeout = network.requests[0].extensions["timeout"]
    assert timeout["connect"] == 2 and timeout["read"] == 3


def test_the_system_resolver_gives_up_after_its_timeout():
    release = threading.Event()

    def hanging_lookup(*args, **kwargs):
        release.wait(5)
        return []

    resolver = SystemResolver(timeout=0.2, lookup=hanging_lookup)
    started = time.monotonic()
    try:
        expected = "Resolving the host name fhir.example.org took longer than 0.2 seconds."
        with pytest.raises(OutboundTimeout, match=expected):
            resolver(FHIR_HOST, 443)
    finally:
        release.set()
    assert time.monotonic() - started < 1.0


def test_the_system_resolver_resolves_localhost_to_loopback():
    assert "127.0.0.1" in SystemResolver()("localhost", 80)


# -- real sockets on loopback: the real transport honours the pin -------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).seen.append(self.headers["Host"])
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def _serving(wrap: Callable[[socket.socket], socket.socket] | None = None):
    """A recording HTTP(S) server on 127.0.0.1 in a thread: (server, its handler class)."""
    handler = type("Recorder", (_Recorder,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if wrap:
        server.socket = wrap(server.socket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def loopback_server():
    with _serving() as served:
        yield served


def test_the_real_transport_connects_to_the_pinned_address_keeping_the_name(loopback_server):
    server, handler = loopback_server
    port = server.server_address[1]
    # "fhir.sandbox.test" exists in no DNS: success proves nothing below resolved it again.
    client = SafeHttpClient(resolver=FakeResolver({"fhir.sandbox.test": ["127.0.0.1"]}), allow_loopback_http=True)
    response = client.get(f"http://fhir.sandbox.test:{port}/metadata")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert handler.seen == [f"fhir.sandbox.test:{port}"]


def test_the_real_transport_honours_the_read_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts connections (the kernel does), never answers
    try:
        port = listener.getsockname()[1]
        client = SafeHttpClient(
            resolver=FakeResolver({}), allow_loopback_http=True, limits=FetchLimits(read_timeout=0.3)
        )
        started = time.monotonic()
        with pytest.raises(OutboundTimeout, match="did not answer within 0.3 seconds"):
            client.get(f"http://127.0.0.1:{port}/metadata")
        assert time.monotonic() - started < 2.0
    finally:
        listener.close()


@pytest.fixture(scope="module")
def local_tls(tmp_path_factory):
    from dev.sandbox.tls import ensure_local_tls

    return ensure_local_tls(Path(tmp_path_factory.mktemp("tls")))


def _tls_wrapper(tls):
    def wrap(sock: socket.socket) -> socket.socket:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        return context.wrap_socket(sock, server_side=True)

    return wrap


@pytest.fixture
def tls_server(local_tls):
    with _serving(_tls_wrapper(local_tls)) as served:
        yield served


def _trusting(local_tls) -> Callable[[], httpx.BaseTransport]:
    context = ssl.create_default_context(cafile=str(local_tls.ca_file))
    return lambda: httpx.HTTPTransport(verify=context, retries=0)


def test_tls_is_verified_for_the_name_not_the_pinned_ip(tls_server, local_tls):
    """The sandbox certificate names localhost and 127.0.0.1. Pinned to 127.0.0.1, a request for
    localhost verifies; one for another name fails, although the certificate is valid for the
    IP connected to: the check is against the name (SNI / server_hostname)."""
    server, handler = tls_server
    port = server.server_address[1]
    resolver = FakeResolver({"localhost": ["127.0.0.1"], "fhir.sandbox.test": ["127.0.0.1"]})
    client = SafeHttpClient(resolver=resolver, transport_factory=_trusting(local_tls), allow_loopback_http=True)

    assert client.get(f"https://localhost:{port}/metadata").status_code == 200
    with pytest.raises(OutboundConnectionFailed) as raised:
        client.get(f"https://fhir.sandbox.test:{port}/metadata")
    assert raised.value.message == "The TLS certificate of fhir.sandbox.test could not be verified."
    assert handler.seen == [f"localhost:{port}"]


# -- POST and PATCH (never redirected), headers for the first hop only, the headers kept --------------


TOKEN_PATH = "/oauth2/token"


def test_post_sends_a_form_to_the_checked_address():
    network = FakeNetwork({(FHIR_HOST, TOKEN_PATH): httpx.Response(200, json={"access_token": "t"})})
    response = client_for(network).post(f"https://{FHIR_HOST}{TOKEN_PATH}",
                                        form={"grant_type": "authorization_code", "code": "a b&c=d/é"})
    assert response.status_code == 200 and response.json() == {"access_token": "t"}
    [request] = network.requests
    assert request.method == "POST"
    assert (request.url.host, request.headers["host"], request.extensions["sni_hostname"]) == (
        PUBLIC_V4, FHIR_HOST, FHIR_HOST)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == b"grant_type=authorization_code&code=a+b%26c%3Dd%2F%C3%A9"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == "virtual-visits-connector"


def test_post_sends_a_raw_body_with_its_content_type_and_extra_headers():
    network = FakeNetwork({(FHIR_HOST, "/Appointment"): httpx.Response(201)})
    client_for(network).post(f"https://{FHIR_HOST}/Appointment", body=b'{"resourceType":"Appointment"}',
                             content_type="application/fhir+json", accept="application/fhir+json",
                             headers={"Authorization": "Bearer abc"})
    [request] = network.requests
    assert request.content == b'{"resourceType":"Appointment"}'
    assert request.headers["content-type"] == "application/fhir+json"
    assert request.headers["accept"] == "application/fhir+json"
    assert request.headers["authorization"] == "Bearer abc"


@pytest.mark.parametrize("arguments", [{}, {"form": {"a": "b"}, "body": b"x"}])
def test_post_takes_either_a_form_or_a_body(arguments):
    network = FakeNetwork({})
    with pytest.raises(ValueError, match="either form or body"):
        client_for(network).post(f"https://{FHIR_HOST}{TOKEN_PATH}", **arguments)
    assert network.requests == []


@pytest.mark.parametrize("status", sorted([301, 302, 303, 307, 308]))
def test_a_post_is_never_redirected_the_redirect_is_the_response(status):
    network = FakeNetwork({
        (FHIR_HOST, TOKEN_PATH): redirect("https://cdn.example.net/steal", status),
        ("cdn.example.net", "/steal"): ok(),
    })
    resolver = FakeResolver({FHIR_HOST: [PUBLIC_V4], "cdn.example.net": [OTHER_PUBLIC_V4]})
    response = client_for(network, resolver).post(f"https://{FHIR_HOST}{TOKEN_PATH}", form={"code": "secret-code"})
    assert response.status_code == status
    assert response.headers["location"] == "https://cdn.example.net/steal"
    assert len(network.requests) == 1 and [h for h, _ in resolver.calls] == [FHIR_HOST]


def test_patch_sends_its_body_once_and_is_never_redirected():
    network = FakeNetwork({(FHIR_HOST, "/Appointment/1"): redirect("/Appointment/2", 307)})
    response = client_for(network).patch(f"https://{FHIR_HOST}/Appointment/1", body=b'[{"op":"test"}]',
                                         content_type="application/json-patch+json",
                                         headers={"If-Match": 'W/"3"'})
    assert response.status_code == 307
    [request] = network.requests
    assert request.method == "PATCH" and request.content == b'[{"op":"test"}]'
    assert request.headers["content-type"] == "application/json-patch+json"
    assert request.headers["if-match"] == 'W/"3"'


@pytest.mark.parametrize("send", [
    lambda c, url: c.post(url, form={"code": "x"}),
    lambda c, url: c.patch(url, body=b"[]", content_type="application/json-patch+json"),
])
def test_post_and_patch_refuse_private_addresses_and_plain_http_before_sending(send):
    network = FakeNetwork({})
    resolver = FakeResolver({FHIR_HOST: [PUBLIC_V4], "internal.example": ["10.0.0.9"]})
    client = client_for(network, resolver)
    with pytest.raises(OutboundRequestRefused, match="private"):
        send(client, "https://internal.example/token")
    with pytest.raises(OutboundRequestRefused, match="Only https"):
        send(client, f"http://{FHIR_HOST}/token")
    with pytest.raises(OutboundRequestRefused, match="169.254.169.254|metadata"):
        send(client, "https://169.254.169.254/latest")
    assert network.requests == []


def test_post_keeps_the_loopback_ceiling():
    network = FakeNetwork({("127.0.0.1:8081", "/token"): ok()})
    local = client_for(network, allow_loopback_http=True)
    assert local.post("http://127.0.0.1:8081/token", form={"a": "b"}).status_code == 200
    with pytest.raises(OutboundRequestRefused):
        local.post("http://127.0.0.1:8081/token", form={"a": "b"}, allow_loopback=False)
    with pytest.raises(OutboundRequestRefused):
        client_for(network).post("http://127.0.0.1:8081/token", form={"a": "b"})
    assert len(network.requests) == 1


def test_a_post_answer_is_bounded_like_a_get():
    network = FakeNetwork({(FHIR_HOST, TOKEN_PATH): httpx.Response(200, content=b"x" * 2048)})
    client = client_for(network, limits=FetchLimits(max_response_bytes=1024))
    with pytest.raises(ResponseTooLarge):
        client.post(f"https://{FHIR_HOST}{TOKEN_PATH}", form={"a": "b"})


def test_get_headers_go_to_the_first_hop_only_never_to_a_redirects_host():
    network = FakeNetwork({
        (FHIR_HOST, "/Patient/1"): redirect("https://cdn.example.net/Patient/1"),
        ("cdn.example.net", "/Patient/1"): ok(),
    })
    resolver = FakeResolver({FHIR_HOST: [PUBLIC_V4], "cdn.example.net": [OTHER_PUBLIC_V4]})
    client_for(network, resolver).get(f"https://{FHIR_HOST}/Patient/1",
                                      headers={"Authorization": "Bearer launch-token", "X-Extra": "1"})
    first, second = network.requests
    assert first.headers["authorization"] == "Bearer launch-token" and first.headers["x-extra"] == "1"
    assert "authorization" not in second.headers and "x-extra" not in second.headers


def test_get_headers_are_not_repeated_on_a_redirect_to_the_same_host():
    network = FakeNetwork({(FHIR_HOST, "/a"): redirect("/b"), (FHIR_HOST, "/b"): ok()})
    client_for(network).get(f"https://{FHIR_HOST}/a", headers={"Authorization": "Bearer launch-token"})
    first, second = network.requests
    assert "authorization" in first.headers and "authorization" not in second.headers


def test_caller_headers_cannot_replace_the_clients_own():
    network = FakeNetwork({(FHIR_HOST, "/m"): ok()})
    client_for(network).get(f"https://{FHIR_HOST}/m", accept="application/fhir+json",
                            headers={"Host": "evil.example", "Accept": "text/html", "User-Agent": "x"})
    [request] = network.requests
    assert request.headers.get_list("host") == [FHIR_HOST]
    assert request.headers.get_list("accept") == ["application/fhir+json"]
    assert request.headers.get_list("user-agent") == ["virtual-visits-connector"]


def test_caller_headers_in_another_case_cannot_add_a_second_host():
    # (found while writing these tests: a lower-case "host" used to be sent as a second Host header)
    network = FakeNetwork({(FHIR_HOST, "/m"): ok()})
    client_for(network).get(f"https://{FHIR_HOST}/m", headers={"host": "evil.example", "accept": "text/html"})
    [request] = network.requests
    assert request.headers.get_list("host") == [FHIR_HOST]
    assert request.headers.get_list("accept") == ["application/json"]


def test_only_the_useful_response_headers_are_kept_with_lower_case_names():
    answer = httpx.Response(200, content=b"{}", headers=[
        ("Content-Type", "application/fhir+json; charset=utf-8"), ("ETag", 'W/"4"'), ("Location", "/x/1"),
        ("Retry-After", "30"), ("WWW-Authenticate", 'Bearer error="invalid_token"'),
        ("Last-Modified", "Mon, 03 Mar 2025 09:00:00 GMT"), ("Set-Cookie", "session=abc"),
        ("X-Request-Id", "r-1"), ("Server", "nginx"),
    ])
    network = FakeNetwork({(FHIR_HOST, "/m"): answer})
    for response in (client_for(network).get(f"https://{FHIR_HOST}/m"),
                     client_for(network).post(f"https://{FHIR_HOST}/m", form={"a": "b"})):
        assert dict(response.headers) == {
            "etag": 'W/"4"', "location": "/x/1", "retry-after": "30",
            "www-authenticate": 'Bearer error="invalid_token"', "last-modified": "Mon, 03 Mar 2025 09:00:00 GMT",
        }
        assert response.content_type == "application/fhir+json"


def test_a_post_sends_one_content_type_whatever_the_callers_header_case():
    network = FakeNetwork({(FHIR_HOST, "/m"): ok()})
    client_for(network).post(f"https://{FHIR_HOST}/m", body=b"{}", content_type="application/json",
                             headers={"content-type": "text/plain"})
    [request] = network.requests
    assert request.headers.get_list("content-type") == ["application/json"]


# -- pooled connections ------------------------------------------------------------------------------


def test_calls_to_one_host_share_a_pooled_transport_and_carry_no_cookies():
    made, seen_cookies = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_cookies.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=abc; Path=/"}, json={})

    def factory() -> httpx.BaseTransport:
        made.append(1)
        return httpx.MockTransport(handler)

    client = SafeHttpClient(resolver=lambda host, port: [PUBLIC_V4], transport_factory=factory)
    for _ in range(3):
        assert client.get(f"https://{FHIR_HOST}/metadata").status_code == 200
    assert len(made) == 1  # one pooled transport for (address, port, name)
    assert seen_cookies == [None, None, None]  # the server's cookie was never sent back


def test_another_name_on_the_same_address_gets_its_own_pool():
    made = []

    def factory() -> httpx.BaseTransport:
        made.append(1)
        return httpx.MockTransport(lambda request: httpx.Response(200, json={}))

    client = SafeHttpClient(resolver=lambda host, port: [PUBLIC_V4], transport_factory=factory)
    client.get(f"https://{FHIR_HOST}/metadata")
    client.get("https://other.example.org/metadata")
    assert len(made) == 2  # a connection verified for one name never serves another
