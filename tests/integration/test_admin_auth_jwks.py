"""Admin tokens validated over a real https socket: the sandbox issuer behind the local CA.

This is what the local stack runs: ``token_validator_from_settings`` builds the production
validator (system CAs + ``CONNECTOR_OUTBOUND_CA_FILE``) and fetches the sandbox's common JWKS
(``/common/discovery/v2.0/keys``, the one key set Entra signs every tenant's tokens with) over
TLS. Fault injection and rotation go through the sandbox's own HTTP controls.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from connector.adapters.identity import (
    EntraTokenValidator,
    outbound_ssl_context,
    token_validator_from_settings,
)
from connector.errors import NotAuthenticated, NotAuthorized, UpstreamUnavailable
from connector.services.admin_auth import authenticate_admin
from connector.settings import Settings
from dev.sandbox.entra import (
    API_ADMIN_ROLE,
    API_CLIENT_ID,
    CONTOSO_TID,
    FABRIKAM_TID,
    TokenIssuer,
    create_app,
)
from dev.sandbox.server import LoopbackServer, client_ssl_context, free_port
from dev.sandbox.tls import ensure_local_tls

pytestmark = pytest.mark.integration

AVERY = "c6ee2195-2f43-43df-9261-340dddf3bb56"  # Contoso, Global Administrator
COMMON_KEYS = "/common/discovery/v2.0/keys"


class CountingApp:
    def __init__(self, app) -> None:
        self.app = app
        self.key_paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/discovery/v2.0/keys"):
            self.key_paths.append(scope["path"])
        await self.app(scope, receive, send)

    @property
    def jwks_fetches(self) -> int:
        return len(self.key_paths)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Entra:
    url: str
    ca_file: Path
    issuer: TokenIssuer
    wire: CountingApp

    def control(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=client_ssl_context(self.ca_file))


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Entra]:
    tls = ensure_local_tls(tmp_path_factory.mktemp("tls"))
    port = free_port()
    app = create_app(public_url=f"https://127.0.0.1:{port}")
    wire = CountingApp(app)
    with LoopbackServer(wire, port, certfile=tls.cert_file, keyfile=tls.key_file, name="entra") as server:
        yield Entra(server.url, tls.ca_file, app.state.issuer, wire)


@pytest.fixture(autouse=True)
def no_faults(entra: Entra) -> Iterator[None]:
    yield
    with entra.control() as control:
        control.delete("/_sandbox/faults")


@pytest.fixture
def closing() -> Iterator[list[EntraTokenValidator]]:
    """Validators to close after the test: open keep-alive connections hold up server shutdown."""
    validators: list[EntraTokenValidator] = []
    yield validators
    for validator in validators:
        validator.close()


def settings(entra: Entra, **overrides) -> Settings:
    values = {
        "stamp_region": "us",
        "storage_account_name": "devstoreaccount1",
        "admin_authority_host": entra.url,
        "admin_api_client_id": API_CLIENT_ID,
        "outbound_ca_file": str(entra.ca_file),
    }
    return Settings(**(values | overrides))


def authenticate(token: str, validator) -> object:
    return authenticate_admin(f"Bearer {token}", validator, admin_role=API_ADMIN_ROLE)


def test_the_sandbox_publishes_the_same_keys_for_common_as_for_each_tenant(entra: Entra):
    with entra.control() as control:
        common = control.get(COMMON_KEYS)
        per_tenant = [control.get(f"/{tid}/discovery/v2.0/keys").json() for tid in (CONTOSO_TID, FABRIKAM_TID)]
    assert common.status_code == 200
    assert per_tenant == [common.json(), common.json()]
    keys = common.json()["keys"]
    assert [key["kid"] for key in keys] == [key.kid for key in entra.issuer.keys.published()]
    assert {key["issuer"] for key in keys} == {f"{entra.url}/{{tenantid}}/v2.0"}
    assert {(key["kty"], key["use"]) for key in keys} == {("RSA", "sig")}


def test_validator_from_settings_verifies_over_tls_with_the_local_ca(entra: Entra, closing):
    validator = token_validator_from_settings(settings(entra))
    closing.append(validator)
    before = len(entra.wire.key_paths)
    principal = authenticate(entra.issuer.mint_access_token(CONTOSO_TID), validator)
    assert (principal.tenant_id, principal.oid, principal.is_global_admin) == (CONTOSO_TID, AVERY, True)
    assert authenticate(entra.issuer.mint_access_token(FABRIKAM_TID), validator).tenant_id == FABRIKAM_TID
    assert entra.wire.key_paths[before:] == [COMMON_KEYS]  # one key set for every tenant

    with pytest.raises(NotAuthorized):
        authenticate(entra.issuer.mint_access_token(CONTOSO_TID, "user"), validator)
    with pytest.raises(NotAuthenticated, match="expired"):
        authenticate(entra.issuer.mint_access_token(CONTOSO_TID, expires_in=-3600), validator)
    with pytest.raises(NotAuthenticated, match="signature does not verify"):
        authenticate(entra.issuer.mint_access_token(CONTOSO_TID, signed_by="forged"), validator)


def test_without_the_local_ca_the_keys_cannot_be_fetched_and_that_is_503(entra: Entra, closing):
    validator = token_validator_from_settings(settings(entra, outbound_ca_file=None))
    closing.append(validator)
    with pytest.raises(UpstreamUnavailable, match="could not be reached") as caught:
        authenticate(entra.issuer.mint_access_token(CONTOSO_TID), validator)
    assert caught.value.http_status == 503


def test_issuer_fault_is_503_with_its_retry_after_which_paces_the_next_fetch(entra: Entra, closing):
    with entra.control() as control:
        control.post("/_sandbox/faults", json={"status": 429, "retry_after": 4, "count": 1})
    clock = Clock()
    http = httpx.Client(verify=outbound_ssl_context(str(entra.ca_file)), timeout=5)
    validator = EntraTokenValidator(authority_host=entra.url, audience=API_CLIENT_ID, http=http, now=clock)
    closing.append(validator)
    token = entra.issuer.mint_access_token(CONTOSO_TID)
    before = entra.wire.jwks_fetches
    with pytest.raises(UpstreamUnavailable) as caught:
        authenticate(token, validator)
    assert (caught.value.http_status, caught.value.retry_after) == (503, 4)
    with pytest.raises(UpstreamUnavailable) as caught:  # the issuer asked for 4 s: not asked again
        authenticate(token, validator)
    assert caught.value.retry_after == 4
    assert entra.wire.jwks_fetches - before == 1
    clock.now += 4
    assert authenticate(token, validator).oid == AVERY  # the fault was for one request only
    assert entra.wire.jwks_fetches - before == 2


def test_forged_tokens_for_random_tenants_cost_no_fetch_over_the_wire(entra: Entra, closing):
    validator = token_validator_from_settings(settings(entra))
    closing.append(validator)
    assert authenticate(entra.issuer.mint_access_token(CONTOSO_TID), validator).oid == AVERY
    before = entra.wire.jwks_fetches
    for _ in range(50):
        tid = str(uuid.uuid4())
        claims = {"tid": tid, "iss": entra.issuer.issuer(tid)}
        forged = entra.issuer.mint_access_token(CONTOSO_TID, signed_by="forged", claims=claims)
        with pytest.raises(NotAuthenticated, match="^the token's signature does not verify$"):
            authenticate(forged, validator)
        foreign = entra.issuer.mint_access_token(CONTOSO_TID, signed_by="foreign", claims=claims)
        with pytest.raises(NotAuthenticated, match="does not publish$"):  # refetch paced: none yet
            authenticate(foreign, validator)
    assert authenticate(entra.issuer.mint_access_token(FABRIKAM_TID), validator).tenant_id == FABRIKAM_TID
    assert entra.wire.jwks_fetches == before


def test_a_slow_issuer_times_out_as_503(entra: Entra, closing):
    with entra.control() as control:
        control.post("/_sandbox/faults", json={"latency_ms": 1000, "count": 1})
    http = httpx.Client(verify=outbound_ssl_context(str(entra.ca_file)), timeout=0.3)
    validator = EntraTokenValidator(authority_host=entra.url, audience=API_CLIENT_ID, http=http)
    closing.append(validator)
    with pytest.raises(UpstreamUnavailable, match="did not answer in time"):
        validator.validate(entra.issuer.mint_access_token(CONTOSO_TID))


def test_key_rotation_over_the_wire_is_picked_up_by_one_refetch(entra: Entra, closing):
    http = httpx.Client(verify=outbound_ssl_context(str(entra.ca_file)), timeout=5)
    # No refetch pacing here: this test is about the rotation, the pacing has unit tests.
    validator = EntraTokenValidator(
        authority_host=entra.url, audience=API_CLIENT_ID, http=http, jwks_refetch_interval_seconds=0
    )
    closing.append(validator)
    before = entra.wire.jwks_fetches
    validator.validate(entra.issuer.mint_access_token(CONTOSO_TID))
    with entra.control() as control:
        for _ in range(2):  # two rotations: the signing key was never in the cached set
            assert control.post("/_sandbox/keys/rotate").status_code == 200
    assert validator.validate(entra.issuer.mint_access_token(CONTOSO_TID))["oid"] == AVERY
    assert validator.validate(entra.issuer.mint_access_token(CONTOSO_TID))["oid"] == AVERY
    assert entra.wire.key_paths[-2:] == [COMMON_KEYS, COMMON_KEYS]
    assert entra.wire.jwks_fetches - before == 2
