"""One stamp with everything a video visit touches, for the clinical-flow tests (a pytest plugin).

- ``visit_sandbox`` (module): the Entra issuer (https, own CA), the Cerner simulator (with its
  sandbox PowerChart), the ACS simulator (owning the demo SMS number) and the Graph simulator,
  on loopback sockets, plus the local stack's keys in a temporary folder;
- ``visit_stack`` (test): the connector's settings for this test (unique table names), the demo
  tenant seeded as ``make run`` seeds it (consents, linked number, Teams organizer, write-back)
  and the local Functions host on a free port.

Everything is in this process, so a test can read the simulators' state, every table and every
log line of the connector.
"""

from __future__ import annotations

from datetime import datetime, timezone
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from connector.composition import Container, container
from connector.settings import get_settings
from dev.demo import register_demo_clients
from dev.host import LocalFunctionsHost
from dev.keys import ensure_local_keys
from dev.sandbox import acs, cerner, entra, graph
from dev.sandbox.server import LoopbackServer, free_port
from dev.sandbox.tls import ensure_local_tls
from dev.seed import seed_demo_tenant
from dev.stack import ACS_SANDBOX_KEY, DEMO_NUMBERS, Ports, connector_environment, subscribe_sms_events

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class VisitSandbox:
    ports: Ports
    ca_file: Path
    keys: object
    entra_app: object
    cerner_app: object
    acs_app: object
    graph_app: object

    @property
    def cerner(self):
        return self.cerner_app.state.cerner

    @property
    def graph(self):
        return self.graph_app.state.graph


@dataclass
class VisitStack:
    host_url: str
    sandbox: VisitSandbox
    deps: Container

    @property
    def powerchart_url(self) -> str:
        return self.sandbox.cerner.urls.powerchart

    @property
    def acs_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox.ports.acs}"

    @property
    def graph_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox.ports.graph}"

    def outbox(self) -> list[dict]:
        return httpx.get(f"{self.acs_url}/_sandbox/outbox").json()

    def meetings(self) -> list[dict]:
        return httpx.get(f"{self.graph_url}/_sandbox/meetings").json()

    def launch_url(self, appointment: str) -> str:
        """What PowerChart opens for a Teams button: the launch URL with a fresh launch."""
        sim = self.sandbox.cerner
        launch = sim.mint_launch(appointment=appointment)
        return f"{self.host_url}/api/launch/provider?iss={sim.urls.fhir_base}&launch={launch}"


def early_morning_zone(now: datetime | None = None) -> str:
    """A time zone where it is about 07:00 now, for the clinic of the visit tests.

    The sandbox seeds a clinic day at fixed local times (video visits from 10:30 to 20:15), and a
    visit two hours past its end gets no live status and its join links expire: in Chicago the
    tests would pass or fail by the hour they run at. Here every visit of "today" lies ahead.
    The demo endpoint takes the sandbox's zone, so the connector and the EHR agree on the day.
    """
    hour = (now or datetime.now(timezone.utc)).hour
    offset = 7 - hour
    if offset < -12:
        offset += 24
    # IANA's Etc zones have the sign the other way round: Etc/GMT-9 is UTC+9.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture(scope="module")
def visit_sandbox(tmp_path_factory) -> VisitSandbox:
    tls = ensure_local_tls(tmp_path_factory.mktemp("tls"))
    keys = ensure_local_keys(tmp_path_factory.mktemp("keys"))
    ports = Ports(host=0, cerner=free_port(), entra=free_port(), acs=free_port(), graph=free_port())
    entra_app = entra.create_app(public_url=f"https://127.0.0.1:{ports.entra}")
    cerner_app = cerner.create_app(public_url=f"http://127.0.0.1:{ports.cerner}", tz=early_morning_zone())
    acs_app = acs.create_app(public_url=f"http://127.0.0.1:{ports.acs}", access_key=ACS_SANDBOX_KEY,
                             purchased_numbers=DEMO_NUMBERS)
    graph_app = graph.create_app(public_url=f"http://127.0.0.1:{ports.graph}", issuer=entra_app.state.issuer,
                                 retry_delays=(0.2, 0.5))
    with LoopbackServer(entra_app, ports.entra, certfile=tls.cert_file, keyfile=tls.key_file, name="entra"), \
            LoopbackServer(cerner_app, ports.cerner, name="cerner"), \
            LoopbackServer(acs_app, ports.acs, name="acs"), \
            LoopbackServer(graph_app, ports.graph, name="graph"):
        yield VisitSandbox(ports, tls.ca_file, keys, entra_app, cerner_app, acs_app, graph_app)


@pytest.fixture
def visit_stack(visit_sandbox: VisitSandbox, azurite, storage_env, unique_prefix, monkeypatch) -> VisitStack:
    port = free_port()
    host_url = f"http://127.0.0.1:{port}"
    ports = replace(visit_sandbox.ports, host=port)
    env = {
        **connector_environment(azurite, ports, visit_sandbox.ca_file, visit_sandbox.keys),
        **storage_env,  # unique table and queue names for this test
        "CONNECTOR_PROVISIONING_QUEUE": f"{unique_prefix}-provision",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    container.cache_clear()
    demo = register_demo_clients(visit_sandbox.cerner_app, visit_sandbox.entra_app, host_url=host_url,
                                 sms_number=DEMO_NUMBERS[0])
    seed_demo_tenant(container(), demo)
    with LocalFunctionsHost(ROOT, port=port, poll_interval=0.2):
        subscribe_sms_events(visit_sandbox.acs_app, f"{host_url}/api/events/acs", visit_sandbox.keys.acs_events_key)
        yield VisitStack(host_url, visit_sandbox, container())
    get_settings.cache_clear()
    container.cache_clear()
