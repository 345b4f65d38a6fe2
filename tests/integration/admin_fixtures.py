"""Shared set-up for admin API tests: the sandbox issuer (https) and Cerner simulator on
loopback, the connector's settings pointing at them and at Azurite, and a way to call the
app's HTTP functions in-process by route."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
import pytest

from connector.composition import container
from connector.settings import get_settings
from dev.sandbox import acs, cerner, entra
from dev.sandbox.server import LoopbackServer, free_port
from dev.sandbox.tls import ensure_local_tls


ACS_KEY = acs.generate_access_key()


@dataclass
class Sandbox:
    entra_app: object
    cerner_app: object
    acs_app: object
    entra_url: str
    fhir_base: str
    acs_url: str
    ca_file: Path

    def token(self, tenant=entra.CONTOSO_TID, user="admin", **kwargs) -> str:
        return self.entra_app.state.issuer.mint_access_token(tenant, user, **kwargs)

    def fhir_base_of(self, cerner_tenant: str) -> str:
        """The FHIR base URL of another Cerner tenant the simulator serves (``fhir_base``: the first's)."""
        return self.cerner_app.state.cerner_tenants.get(cerner_tenant).urls.fhir_base


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Sandbox:
    tls = ensure_local_tls(tmp_path_factory.mktemp("tls"))
    entra_port, cerner_port, acs_port = free_port(), free_port(), free_port()
    entra_app = entra.create_app(public_url=f"https://127.0.0.1:{entra_port}")
    cerner_app = cerner.create_app(public_url=f"http://127.0.0.1:{cerner_port}")
    acs_app = acs.create_app(public_url=f"http://127.0.0.1:{acs_port}", access_key=ACS_KEY)
    with LoopbackServer(entra_app, entra_port, certfile=tls.cert_file, keyfile=tls.key_file, name="entra"), \
            LoopbackServer(cerner_app, cerner_port, name="cerner"), LoopbackServer(acs_app, acs_port, name="acs"):
        yield Sandbox(entra_app, cerner_app, acs_app, f"https://127.0.0.1:{entra_port}",
                      cerner_app.state.cerner.urls.fhir_base, f"http://127.0.0.1:{acs_port}", tls.ca_file)


@pytest.fixture
def admin_env(storage_env, sandbox, monkeypatch):
    env = {
        "CONNECTOR_ADMIN_AUTHORITY_HOST": sandbox.entra_url,
        "CONNECTOR_ADMIN_API_CLIENT_ID": entra.API_CLIENT_ID,
        "CONNECTOR_ADMIN_API_SCOPE": f"{entra.API_APP_ID_URI}/{entra.API_SCOPE}",
        "CONNECTOR_OUTBOUND_CA_FILE": str(sandbox.ca_file),
        "CONNECTOR_PUBLIC_BASE_URL": "http://127.0.0.1:7071",
        "CONNECTOR_ACS_ENDPOINT": sandbox.acs_url,
        "CONNECTOR_ACS_EMULATOR_KEY": ACS_KEY,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    container.cache_clear()
    container().tables.create_missing()
    container().provisioning_queue.create_if_missing()
    yield sandbox
    get_settings.cache_clear()
    container.cache_clear()


def call(builder, method: str, *, body=None, token: str | None = None, route_params=None, params=None,
         headers=None) -> func.HttpResponse:
    """Call one HTTP function in-process, as the worker would."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    req = func.HttpRequest(method, "http://127.0.0.1:7071/api/admin", headers=all_headers, params=params or {},
                           route_params=route_params or {}, body=raw)
    return builder.build().get_user_function()(req)


def body_of(resp: func.HttpResponse):
    return json.loads(resp.get_body()) if resp.get_body() else None
