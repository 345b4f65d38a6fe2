"""SMART Backend Services against the Cerner simulator, over real loopback sockets: the reminder
scan's token (client_credentials + private_key_jwt, our keys fetched from our JWKS URL like
Cerner fetches them), key rotation, and the scan's paged, retried Appointment search over a
seeded week that changes under it.

Nothing is faked between the connector's adapters (SafeHttpClient, BackendServicesTokens,
RetryingFhir) and the simulator; the simulator fetches our JWK Set from a tiny loopback server
that serves whatever key ring the test holds, with the Cache-Control our JWKS function sends.
Only sleeping is recorded instead of done.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.adapters.fhir.backend_token import BackendServicesTokens
from connector.adapters.fhir.rest import FhirRestClient
from connector.adapters.fhir.retry import RetryingFhir, RetryPolicy, retrying
from connector.adapters.identity.client_assertions import ClientAssertionSigner, KeyRing
from connector.adapters.net import SafeHttpClient
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.errors import ConfigurationError, UpstreamUnavailable
from connector.services.telecom import mobile_phone_e164
from dev.sandbox.cerner import CernerSimulator, RegisteredClient, create_app
from dev.sandbox.faults import Fault
from dev.sandbox.server import LoopbackServer, free_port

pytestmark = pytest.mark.integration

TODAY = date(2026, 1, 15)
CHICAGO = ZoneInfo("America/Chicago")
TENANT = "11111111-2222-3333-4444-555555555555"
BACKEND = "0f6a1b7e-scan-backend-service"
SCOPES = ("system/Appointment.read", "system/Patient.read")
FAMILY_MEDICINE, CARDIOLOGY = "32216101", "32216102"
JWKS_PATH = "/api/.well-known/jwks.json"


def new_rsa() -> ClientAssertionSigner:
    return ClientAssertionSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def new_ec() -> ClientAssertionSigner:
    return ClientAssertionSigner(ec.generate_private_key(ec.SECP384R1()))


@dataclass
class OurJwks:
    """The connector's JWKS endpoint, as connector/functions/jwks.py answers it."""

    ring: KeyRing
    cache_control: str = "public, max-age=300"
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def serve(self, request: Request) -> JSONResponse:
        with self.lock:
            self.hits += 1
        return JSONResponse(self.ring.jwks(), headers={"Cache-Control": self.cache_control})


@dataclass
class Stack:
    sim: CernerSimulator
    cerner_url: str
    jwks: OurJwks
    jwks_url: str
    http: SafeHttpClient
    tokens: BackendServicesTokens
    endpoint: FhirEndpoint

    @property
    def token_url(self) -> str:
        return self.sim.urls.token

    @property
    def base(self) -> str:
        return self.sim.urls.fhir_base

    def token(self) -> str:
        return self.tokens.token(self.endpoint, self.token_url, SCOPES)

    def issued(self) -> list[dict]:
        return [e for e in self.sim.audit("token") if e.get("outcome") == "issued"]


class Sleeps:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(scope="module")
def first_key() -> ClientAssertionSigner:
    return new_rsa()


@pytest.fixture
def stack(first_key):
    jwks = OurJwks(KeyRing(first_key))
    jwks_server = LoopbackServer(Starlette(routes=[Route(JWKS_PATH, jwks.serve)]), name="connector-jwks")
    cerner_port = free_port()
    cerner_url = f"http://127.0.0.1:{cerner_port}"
    app = create_app(public_url=cerner_url, today=TODAY)
    sim: CernerSimulator = app.state.cerner
    with jwks_server, LoopbackServer(app, cerner_port, name="cerner"):
        jwks_url = f"{jwks_server.url}{JWKS_PATH}"
        # What the admin registers in Cerner's code console: a System app with our JWKS URL.
        sim.register_client(RegisteredClient(BACKEND, jwks_uri=jwks_url, scopes=frozenset(SCOPES),
                                             name="Connector reminders"))
        http = SafeHttpClient(allow_loopback_http=True)
        tokens = BackendServicesTokens(http, lambda: jwks.ring, allow_loopback=True, jwks_url=jwks_url)
        endpoint = FhirEndpoint(tenant_id=TENANT, endpoint_id="sandbox", base_url=sim.urls.fhir_base,
                                environment=Environment.test, backend_client_id=BACKEND,
                                location_ids=[FAMILY_MEDICINE, CARDIOLOGY], timezone="America/Chicago",
                                created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
        try:
            yield Stack(sim, cerner_url, jwks, jwks_url, http, tokens, endpoint)
        finally:
            http.close()


def scanner(stack: Stack, sleeps: Sleeps | None = None, **options) -> RetryingFhir:
    return RetryingFhir(FhirRestClient(stack.http, allow_loopback=True), stack.http, allow_loopback=True,
                        sleep=sleeps or Sleeps(), jitter=lambda: 0.0, **options)


def window(start: datetime, hours: float) -> list[tuple[str, str]]:
    """Cerner's date range: ge and lt, each with a time and a zone."""
    end = start + timedelta(hours=hours)
    return [("date", f"ge{start.isoformat(timespec='seconds')}"), ("date", f"lt{end.isoformat(timespec='seconds')}")]


def post_assertion(stack: Stack, assertion: str) -> httpx.Response:
    return httpx.post(stack.token_url, data={
        "grant_type": "client_credentials", "scope": " ".join(SCOPES),
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}, timeout=10)


# -- the token -----------------------------------------------------------------------------------


def test_the_scan_token_reads_a_departments_appointments_and_is_cached(stack):
    access_token = stack.token()
    day = datetime.combine(TODAY, datetime.min.time(), CHICAGO)
    pages = list(scanner(stack).search_pages(stack.base, access_token, "Appointment",
                                             [("location", CARDIOLOGY), *window(day, 24)]))
    assert [a.id for p in pages for a in p.resources] == ["4826002", "4826004", "4826006", "4826009"]
    [issued] = stack.issued()
    assert issued["client_id"] == BACKEND and issued["scope"] == " ".join(SCOPES)
    assert stack.token() == access_token  # cached: no second request
    assert len(stack.issued()) == 1
    assert stack.jwks.hits == 1
    [fetch] = stack.sim.audit("jwks_fetch")
    assert (fetch["client_id"], fetch["keys"], fetch["max_age"]) == (BACKEND, 1, 300)


def test_rotation_the_simulator_refetches_our_jwks_for_a_new_kid_only(stack, first_key):
    stack.token()
    assert stack.jwks.hits == 1
    stack.tokens.forget(stack.endpoint)
    stack.token()  # the same key again: the simulator uses its cached copy (max-age=300)
    assert stack.jwks.hits == 1 and len(stack.issued()) == 2

    second_key = new_ec()
    stack.jwks.ring = KeyRing(second_key, [first_key])  # rotated: the new key signs, both are published
    stack.tokens.forget(stack.endpoint)
    stack.token()
    assert stack.jwks.hits == 2  # an unknown kid made it fetch our JWKS again
    assert len(stack.issued()) == 3
    assert [e["keys"] for e in stack.sim.audit("jwks_fetch")] == [1, 2]

    # During the overlap an assertion of the old key still verifies, from the cache.
    assert post_assertion(stack, first_key.assertion(BACKEND, stack.token_url)).status_code == 200
    assert stack.jwks.hits == 2

    # Overlap over: the old key is no longer published. Once the simulator's copy has expired
    # (its clock moved past max-age), the old key is refused after a fresh fetch.
    stack.jwks.ring = KeyRing(second_key)
    later = time.time() + 301
    stack.sim.grants.now = lambda: later
    refused = post_assertion(stack, first_key.assertion(BACKEND, stack.token_url, now=later))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert "no key with kid" in refused.json()["error_description"]
    assert stack.jwks.hits == 3
    assert post_assertion(stack, second_key.assertion(BACKEND, stack.token_url, now=later)).status_code == 200


def test_a_key_our_jwks_url_does_not_publish_is_refused_with_a_sentence_for_the_admin(stack):
    stranger = new_rsa()
    stack.tokens = BackendServicesTokens(stack.http, stranger, allow_loopback=True, jwks_url=stack.jwks_url)
    with pytest.raises(ConfigurationError) as caught:
        stack.token()
    message = caught.value.message
    assert f"register our JWKS URL {stack.jwks_url}" in message and "code console" in message
    [refusal] = [e for e in stack.sim.audit("token") if e.get("outcome") == "invalid_client"]
    assert "no key with kid" in refusal["reason"]
    assert stack.jwks.hits == 1  # fetched once (nothing cached yet), not again for the same unknown kid


@pytest.mark.parametrize("make_key", [new_rsa, new_ec], ids=["RS384", "ES384"])
def test_backend_services_are_checked_as_cerner_checks_them(stack, make_key):
    key = make_key()
    stack.jwks.ring = KeyRing(key)
    now = int(time.time())
    private = key._key  # the test's own key: to sign what the connector never would

    def signed(claims: dict, alg: str = key.algorithm, kid: str = key.kid, **header) -> str:
        body = {"iss": BACKEND, "sub": BACKEND, "aud": stack.token_url, "iat": now, "exp": now + 240,
                "jti": f"jti-{time.monotonic_ns()}", **claims}
        return jwt.encode(body, private, algorithm=alg, headers={"kid": kid, **header})

    def refused(assertion: str) -> str:
        response = post_assertion(stack, assertion)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
        return response.json()["error_description"]

    good = key.assertion(BACKEND, stack.token_url)
    assert post_assertion(stack, good).status_code == 200
    assert "jti" in refused(good)  # replayed
    assert "aud must be the token endpoint" in refused(signed({"aud": stack.base}))
    assert "five minutes" in refused(signed({"exp": now + 301 + 60}))
    assert "expired" in refused(signed({"exp": now - 60}))
    assert "sub must equal iss" in refused(signed({"sub": "someone-else"}))
    if key.algorithm == "RS384":
        assert "'RS256' not allowed" in refused(signed({}, alg="RS256"))
    else:
        p256 = ec.generate_private_key(ec.SECP256R1())
        assertion = jwt.encode({"iss": BACKEND, "sub": BACKEND, "aud": stack.token_url, "exp": now + 240, "jti": "e"},
                               p256, algorithm="ES256", headers={"kid": key.kid})
        assert "'ES256' not allowed" in refused(assertion)
    assert "jku" in refused(signed({}, jku="https://attacker.example/jwks.json"))
    assert "kid" in refused(signed({}, kid="not-our-kid"))
    assert post_assertion(stack, signed({})).status_code == 200


# -- faults and retries -------------------------------------------------------------------------


def test_the_token_endpoints_outages_are_retried_and_throttling_honoured(stack):
    token_path = stack.sim.urls.path(stack.token_url)
    stack.sim.faults.arm(Fault(status=503, count=1, path_prefix=token_path))
    stack.sim.faults.arm(Fault(status=429, retry_after=2, count=1, path_prefix=token_path))
    sleeps = Sleeps()
    access_token = retrying(stack.token, sleep=sleeps, jitter=lambda: 0.0, what="backend token")
    assert access_token and sleeps.waits == [0.25, 2.0]
    assert len(stack.issued()) == 1

    stack.tokens.forget(stack.endpoint)
    stack.sim.faults.arm(Fault(status=429, retry_after=90, count=1, path_prefix=token_path))
    with pytest.raises(UpstreamUnavailable) as caught:
        retrying(stack.token, sleep=sleeps, policy=RetryPolicy(max_wait=30))
    assert caught.value.retry_after == 90.0  # more than we may wait: the timer comes back later


def test_a_seeded_week_is_scanned_page_by_page_through_faults(stack, caplog):
    sim = stack.sim
    start = datetime.combine(TODAY, datetime.min.time(), CHICAGO)
    bulk = sim.bulk_appointments(FAMILY_MEDICINE, 500, start, spread_hours=72, video_ratio=0.5, patients=120)
    assert len(bulk.appointment_ids) == 500 and len(bulk.video_ids) == 250 and len(bulk.patient_ids) == 120
    seeded = [a["id"] for a in sim.seed.appointments if f"Location/{FAMILY_MEDICINE}" in json.dumps(a)]
    # A broken record among them (a value R4 cannot hold): skipped by id, the scan goes on.
    broken = dict(sim.store.get("Appointment", bulk.appointment_ids[123]), minutesDuration="forty")
    sim.store.put(broken)

    sleeps = Sleeps()
    fhir = scanner(stack, sleeps)
    params = [("location", FAMILY_MEDICINE), *window(start, 72), ("_count", "100")]
    found, skipped, numbers = [], [], []
    with caplog.at_level(logging.WARNING, logger="connector.fhir.retry"):
        for page in fhir.search_pages(stack.base, stack.token, "Appointment", params):
            numbers.append(page.number)
            found += [a.id for a in page.resources]
            skipped += page.skipped
            if page.number == 1:  # Cerner has a bad minute in the middle of the walk
                sim.faults.arm(Fault(status=503, count=1, path_prefix="/r4/"))
                sim.faults.arm(Fault(status=429, retry_after=1, count=1, path_prefix="/r4/"))
    expected = set(bulk.appointment_ids) | set(seeded)
    assert skipped == [bulk.appointment_ids[123]]
    assert len(found) == len(set(found)) == len(expected) - 1
    assert set(found) == expected - {bulk.appointment_ids[123]}
    assert numbers == list(range(1, len(expected) // 100 + 2))
    assert sleeps.waits == [0.25, 1.0]
    assert len(stack.issued()) == 1  # one token for the whole walk
    starts = [datetime.fromisoformat(sim.store.get("Appointment", i)["start"]) for i in found]
    assert starts == sorted(starts)
    assert f"skipped Appointment {bulk.appointment_ids[123]} on search page 2" in caplog.text
    assert "forty" not in caplog.text

    # The bulk patients' mobile numbers: fictional (555-01xx), one each, as the connector reads them.
    reader = FhirRestClient(stack.http, allow_loopback=True)
    numbers_read = {mobile_phone_e164(reader.read(stack.base, stack.token(), "Patient", pid))
                    for pid in bulk.patient_ids[95:110]}
    assert len(numbers_read) == 15
    assert all(re.fullmatch(r"\+1(773|872)55501\d\d", n) for n in numbers_read)


def test_rescheduled_and_cancelled_appointments_show_in_the_next_scan(stack):
    sim = stack.sim
    start = datetime.combine(TODAY + timedelta(days=2), datetime.min.time(), CHICAGO)
    bulk = sim.bulk_appointments(CARDIOLOGY, 30, start, spread_hours=10, video_ratio=1.0, patients=5)
    moved, dropped, kept = bulk.appointment_ids[3], bulk.appointment_ids[4], bulk.appointment_ids[5]
    params = [("location", CARDIOLOGY), *window(start, 24), ("status", "booked"), ("_count", "7")]
    fhir = scanner(stack)

    def scan() -> dict[str, tuple[str, str]]:
        return {a.id: (a.start.isoformat(), a.meta.versionId)
                for p in fhir.search_pages(stack.base, stack.token, "Appointment", params) for a in p.resources}

    before = scan()
    assert set(before) == set(bulk.appointment_ids) and before[moved][1] == "1"
    _, etag = FhirRestClient(stack.http, allow_loopback=True).read_versioned(stack.base, stack.token(),
                                                                            "Appointment", moved)
    assert etag == 'W/"1"'

    new_start = (start + timedelta(hours=20)).astimezone(timezone.utc)
    response = httpx.post(f"{stack.cerner_url}/_sandbox/appointments/{moved}/reschedule",
                          json={"start": new_start.isoformat(), "minutes": 45})
    assert response.status_code == 200 and response.headers["etag"] == 'W/"2"'
    assert httpx.post(f"{stack.cerner_url}/_sandbox/appointments/{dropped}/cancel",
                      json={"reason": "Patient request"}).status_code == 200

    after = scan()
    assert dropped not in after  # cancelled: not booked any more
    assert after[moved] == (new_start.isoformat(), "2")
    assert after[kept] == before[kept]
    _, etag = FhirRestClient(stack.http, allow_loopback=True).read_versioned(stack.base, stack.token(),
                                                                            "Appointment", moved)
    assert etag == 'W/"2"'  # the ETag a reminder read before no longer matches
