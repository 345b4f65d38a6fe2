"""`make run`: the whole stack on loopback, seeded, until Ctrl-C.

Azurite (child process group), the sandbox simulators (Cerner SMART + FHIR over http, the
Entra ID issuer over https with a local CA) and the local Functions host, all in this
process except Azurite. SIGINT / SIGTERM stop everything, children included.

    python -m dev.stack [--host-port 7071] [--no-host] [--data-dir .local]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from dev.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite, AzuriteEndpoints
from dev.keys import LocalKeys, ensure_local_keys
from dev.sandbox.server import LoopbackServer
from dev.sandbox.tls import ensure_local_tls

ROOT = Path(__file__).resolve().parents[1]
# The local ACS simulator's access key: a sandbox value, valid nowhere else (base64, as ACS keys are).
ACS_SANDBOX_KEY = "c2FuZGJveC1hY3Mta2V5LW5vdC1hLXJlYWwtc2VjcmV0LTAwMDAwMDAwMDA="
# The demo tenant's toll-free SMS number, owned in the ACS sandbox from the start (fictional).
DEMO_NUMBERS = ("+18335550142",)
log = logging.getLogger("dev.stack")


@dataclass(frozen=True)
class Ports:
    host: int = 7071
    cerner: int = 8081
    entra: int = 8443
    acs: int = 8089
    graph: int = 8090
    azurite_blob: int = 10000
    azurite_queue: int = 10001
    azurite_table: int = 10002


def connector_environment(azurite: AzuriteEndpoints, ports: Ports, ca_file: Path,
                          keys: LocalKeys | None = None) -> dict[str, str]:
    """The app settings the connector reads, pointing at this stack (``keys``: the local stack's
    own session, client assertion and notification keys; without them, launches are off)."""
    from dev.sandbox import entra, graph

    host_url = f"http://127.0.0.1:{ports.host}"
    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "CONNECTOR_STAMP_REGION": "us",
        "CONNECTOR_LOCAL_MODE": "true",
        "CONNECTOR_PUBLIC_BASE_URL": host_url,
        "CONNECTOR_STORAGE_ACCOUNT_NAME": ACCOUNT_NAME,
        "CONNECTOR_STORAGE_TABLE_ENDPOINT": azurite.table_url,
        "CONNECTOR_STORAGE_QUEUE_ENDPOINT": azurite.queue_url,
        "CONNECTOR_STORAGE_EMULATOR_KEY": ACCOUNT_KEY,
        "CONNECTOR_ADMIN_AUTHORITY_HOST": f"https://127.0.0.1:{ports.entra}",
        "CONNECTOR_ADMIN_API_CLIENT_ID": entra.API_CLIENT_ID,
        "CONNECTOR_ADMIN_API_SCOPE": f"{entra.API_APP_ID_URI}/{entra.API_SCOPE}",
        "CONNECTOR_PORTAL_CLIENT_ID": entra.PORTAL_CLIENT_ID,
        "CONNECTOR_PORTAL_STAMPS": json.dumps([{"region": "us", "label": "United States", "api_base_url": host_url}]),
        "CONNECTOR_OUTBOUND_CA_FILE": str(ca_file),
        "CONNECTOR_ACS_ENDPOINT": f"http://127.0.0.1:{ports.acs}",
        "CONNECTOR_ACS_EMULATOR_KEY": ACS_SANDBOX_KEY,
        "CONNECTOR_PROVISIONING_QUEUE": "provision-number",
        "CONNECTOR_SUBSCRIPTION_RENEWAL_SCHEDULE": "0 */30 * * * *",
        "CONNECTOR_REMINDER_SCAN_SCHEDULE": "0 */2 * * * *",  # every two minutes: the demo shows reminders soon
        "CONNECTOR_RETENTION_SCHEDULE": "0 17 3 * * *",
        "CONNECTOR_SCAN_QUEUE": "reminder-scan",
        "CONNECTOR_SEND_QUEUE": "reminder-send",
        **({
            "CONNECTOR_SESSION_KEY": keys.session_key,
            "CONNECTOR_CLIENT_ASSERTION_KEY": keys.client_assertion_pem,
            "CONNECTOR_GRAPH_NOTIFICATION_CERTIFICATE": keys.notification_certificate_pem,
            "CONNECTOR_GRAPH_NOTIFICATION_KEY": keys.notification_key_pem,
            "CONNECTOR_OPTOUT_KEY": keys.optout_key,
            "CONNECTOR_ACS_EVENTS_KEY": keys.acs_events_key,
        } if keys else {}),
        **graph.connector_environment(graph_url=f"http://127.0.0.1:{ports.graph}",
                                      entra_url=f"https://127.0.0.1:{ports.entra}"),
    }


def subscribe_sms_events(acs_app, webhook: str, key: str) -> None:
    """What the stamp's Event Grid subscription does in Azure: ACS's SMS events to our webhook,
    with the secret delivery header (the handshake runs now, so the host must be serving)."""
    subscription = acs_app.state.events.subscribe(webhook, name="connector-acs-sms",
                                                  headers={"X-Connector-Events-Key": key})
    if getattr(subscription, "state", "Succeeded") != "Succeeded":
        raise RuntimeError("the ACS sandbox could not subscribe the connector's SMS events webhook")


class Stack:
    def __init__(self, ports: Ports, data_dir: Path, *, with_host: bool = True):
        self.ports = ports
        self.data_dir = data_dir
        self.with_host = with_host
        self._exit = ExitStack()
        self.urls: dict[str, str] = {}
        self.apps: dict[str, object] = {}

    def start(self) -> "Stack":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from dev.sandbox import acs, cerner, entra, graph

        p = self.ports
        azurite = AzuriteEndpoints(p.azurite_blob, p.azurite_queue, p.azurite_table)
        self._exit.enter_context(Azurite(azurite, in_memory=False, location=self.data_dir / "azurite"))
        tls = ensure_local_tls(self.data_dir / "tls")

        cerner_url = f"http://127.0.0.1:{p.cerner}"
        cerner_app = cerner.create_app(public_url=cerner_url)
        self._exit.enter_context(LoopbackServer(cerner_app, p.cerner, name="cerner"))
        entra_url = f"https://127.0.0.1:{p.entra}"
        entra_app = entra.create_app(public_url=entra_url)
        self._exit.enter_context(
            LoopbackServer(entra_app, p.entra, certfile=tls.cert_file, keyfile=tls.key_file, name="entra")
        )

        acs_app = acs.create_app(public_url=f"http://127.0.0.1:{p.acs}", access_key=ACS_SANDBOX_KEY,
                                 purchased_numbers=DEMO_NUMBERS)
        self._exit.enter_context(LoopbackServer(acs_app, p.acs, name="acs"))
        graph_app = graph.create_app(public_url=f"http://127.0.0.1:{p.graph}", issuer=entra_app.state.issuer)
        self._exit.enter_context(LoopbackServer(graph_app, p.graph, name="graph"))

        keys = ensure_local_keys(self.data_dir / "keys")
        os.environ.update(connector_environment(azurite, p, tls.ca_file, keys))
        from dev.demo import DEMO_ORGANISATIONS, demo_fhir_base, register_demo_clients, seed_demo

        demo = register_demo_clients(cerner_app, entra_app, host_url=f"http://127.0.0.1:{p.host}",
                                     sms_number=DEMO_NUMBERS[0])
        seed_demo(demo)
        self.apps = {"cerner": cerner_app, "entra": entra_app, "acs": acs_app, "graph": graph_app}

        # One Cerner tenant (FHIR base URL) per demo organisation: a URL is registered once per stamp.
        fhir_bases = {
            f"Cerner sandbox FHIR base of {org.name} ({'seeded' if org.seeded else 'to add in the portal'})":
                demo_fhir_base(cerner_app, org)
            for org in DEMO_ORGANISATIONS
        }
        self.urls = {
            "Sandbox PowerChart (launch a video visit)": cerner_app.state.cerner.urls.powerchart,
            **fhir_bases,
            "Entra ID sandbox issuer": f"{entra_url}/{demo.tenant_id}/v2.0",
            "ACS sandbox SMS outbox": f"http://127.0.0.1:{p.acs}/_sandbox/outbox",
            "Graph sandbox meetings": f"http://127.0.0.1:{p.graph}/_sandbox/meetings",
            "Azurite tables": azurite.table_url,
            "Azurite queues": azurite.queue_url,
            "local CA to trust (or accept the issuer once)": str(tls.ca_file),
        }
        if self.with_host:
            from dev.host import LocalFunctionsHost

            host = self._exit.enter_context(LocalFunctionsHost(ROOT, port=p.host))
            self.urls = {"Admin portal": f"{host.url}/", "Health": f"{host.url}/api/health", **self.urls}
            subscribe_sms_events(acs_app, f"{host.url}/api/events/acs", keys.acs_events_key)

    def stop(self) -> None:
        self._exit.close()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dev.stack", description=__doc__.splitlines()[0])
    defaults = Ports()
    for name in Ports.__dataclass_fields__:
        parser.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=getattr(defaults, name))
    parser.add_argument("--no-host", action="store_true", help="start storage and the sandbox only (for `func start`)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".local")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The storage SDK logs every request with its headers at INFO: not in our console.
    logging.getLogger("azure").setLevel(logging.WARNING)
    args = _parse(sys.argv[1:] if argv is None else argv)
    ports = Ports(**{name: getattr(args, f"{name}_port") for name in Ports.__dataclass_fields__})
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed
        signal.signal(sig, lambda *_: stop.set())

    stack = Stack(ports, args.data_dir, with_host=not args.no_host)
    try:
        stack.start()
    except Exception as exc:  # a taken port, a missing npm install: say so plainly
        log.error("the stack did not start: %s", exc)
        return 1
    width = max(map(len, stack.urls))
    print("\nThe stack is up. Open:", flush=True)
    for label, url in stack.urls.items():
        print(f"  {label:<{width}}  {url}", flush=True)
    print("\nStart a video visit from the sandbox PowerChart: its Teams button launches the connector as"
          "\nthe clinician; Send link texts the patient (see the SMS outbox), whose link opens the meeting.", flush=True)
    print("\nSign in to the portal as Avery Lindqvist (Global Administrator of Contoso Clinic, the"
          "\ndemo tenant), or Samira Haddad (Fabrikam Health, not set up yet: she adds Fabrikam's own"
          "\nFHIR base URL above, as a Test URL).", flush=True)
    print("\nCtrl-C stops everything.", flush=True)
    try:
        stop.wait()
    finally:
        print("Stopping...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
