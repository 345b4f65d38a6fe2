"""`make run`'s stack as a user runs it: up, healthy, seeded, and gone after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from azure.data.tables import TableClient

from dev.azurite import AzuriteEndpoints
from dev.sandbox.server import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (here: the run's own data dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and int(pid) != os.getpid():
            found.append(cmdline)
    return found


@pytest.fixture
def stack(tmp_path):
    ports = {name: free_port() for name in ("host", "cerner", "entra", "acs", "graph", "azurite-blob", "azurite-queue", "azurite-table")}
    args = [sys.executable, "-m", "dev.stack", "--data-dir", str(tmp_path / "data")]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_") and k != "AzureWebJobsStorage"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc, ports, tmp_path / "data"
    if proc.poll() is None:  # a failed test: stop it as a user would, then make sure
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_banner(proc: subprocess.Popen, timeout: float = 90) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(lines)
    raise AssertionError("the stack did not come up:\n" + "".join(lines))


def test_stack_comes_up_seeded_and_ctrl_c_leaves_nothing_behind(stack):
    proc, ports, data_dir = stack
    banner = wait_for_banner(proc)
    host = f"http://127.0.0.1:{ports['host']}"
    assert f"{host}/api/health" in banner and f"{host}/" in banner

    health = httpx.get(f"{host}/api/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["checks"] == {"tables": True, "queues": True}
    assert "Virtual visits connector" in httpx.get(f"{host}/", timeout=10).text

    # one FHIR base per demo organisation (its own Cerner tenant), each answering with an R4
    # CapabilityStatement and its own SMART configuration
    bases = {line.split(" (")[0].split(" of ")[-1]: line.split()[-1]
             for line in banner.splitlines() if "Cerner sandbox FHIR base of" in line}
    assert list(bases) == ["Contoso Clinic", "Fabrikam Health"] and len(set(bases.values())) == 2
    assert "Contoso Clinic (seeded)" in banner and "Fabrikam Health (to add in the portal)" in banner
    for base in bases.values():
        metadata = httpx.get(f"{base}/metadata", timeout=10).json()
        assert metadata["resourceType"] == "CapabilityStatement" and metadata["fhirVersion"].startswith("4.0")
        smart = httpx.get(f"{base}/.well-known/smart-configuration", timeout=10).json()
        assert f"/tenants/{base.rsplit('/', 1)[1]}/" in smart["token_endpoint"]
    fhir_base = bases["Contoso Clinic"]

    # the demo tenant is seeded: its endpoint is the Cerner sandbox, with what validation would find
    azurite = AzuriteEndpoints(ports["azurite-blob"], ports["azurite-queue"], ports["azurite-table"])
    seeded = list(TableClient.from_connection_string(azurite.connection_string, "endpoints").list_entities())
    assert [e["base_url"] for e in seeded] == [fhir_base]
    assert seeded[0]["token_url"].endswith("/protocols/oauth2/profiles/smart-v1/token")
    assert json.loads(seeded[0]["location_ids"])

    assert processes_mentioning(str(data_dir)), "Azurite should be running with the stack's data dir"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    time.sleep(0.5)
    assert not any(port_open(port) for port in ports.values()), "a port is still served after Ctrl-C"
    assert processes_mentioning(str(data_dir)) == [], "a child process outlived the stack"


def test_closing_the_terminal_stops_everything_too(stack):
    proc, ports, data_dir = stack
    wait_for_banner(proc)
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 0
    time.sleep(0.5)
    assert processes_mentioning(str(data_dir)) == [], "Azurite outlived the stack"
    assert not any(port_open(port) for port in ports.values())


def test_azurite_dies_with_a_killed_stack(stack):
    proc, ports, data_dir = stack
    wait_for_banner(proc)
    proc.kill()  # no handler runs: only the parent-death signal can stop Azurite now
    proc.wait()
    deadline = time.monotonic() + 15
    while processes_mentioning(str(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(data_dir)) == []


def test_a_taken_port_is_a_plain_error(stack_port_taken):
    proc, output = stack_port_taken
    assert proc.returncode == 1
    assert "the stack did not start" in output
    assert "Traceback" not in output


@pytest.fixture
def stack_port_taken(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [sys.executable, "-m", "dev.stack", "--data-dir", str(tmp_path / "data"), "--cerner-port", str(port)]
        for name in ("host", "entra", "acs", "azurite-blob", "azurite-queue", "azurite-table"):
            args += [f"--{name}-port", str(free_port())]
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=90)
    yield proc, proc.stdout + proc.stderr
    assert processes_mentioning(str(tmp_path / "data")) == [], "a failed start left a child behind"
