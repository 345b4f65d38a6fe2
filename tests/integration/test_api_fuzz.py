"""The API's contract, fuzzed: schemathesis against the local host on Azurite and the sandbox.

Each run takes every operation of /api/openapi.json, every check (``--checks all``) and all four
phases (the document's examples, coverage of each constraint and its negation, random fuzzing,
and stateful sequences through the document's links: a provisioning to its operation, a new
endpoint to its reads and changes), with the seeded clinic's admin token, a plain user's token
and no token. CI runs a fixed seed and a bounded number of cases; ``make fuzz`` runs more cases
with a random seed (FUZZ_SEED, FUZZ_MAX_EXAMPLES). A failure names the case and how to replay it;
the reports (JUnit, the run's JSON) are kept under test-artifacts/fuzz/.

schemathesis.toml (repo root) holds the few settings where this API's documented answers differ
from schemathesis's defaults, each with its reason; the same file serves a manual run against
`make run` (the README's Tests section has the command, with a token from the sandbox issuer).
To replay this run: FUZZ_SEED=<seed> FUZZ_MAX_EXAMPLES=<n> .venv/bin/python -m pytest -s <this file>.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.errors import InvalidInput
from connector.functions.admin import tenant
from dev.demo import DEMO_ORGANISATIONS, demo_fhir_base
from dev.sandbox.cerner import SECOND_TENANT
from dev.sandbox.entra import CONTOSO_TID

TIMEOUT = int(os.environ.get("FUZZ_TIMEOUT") or 900)  # seconds, per run of schemathesis
pytestmark = [pytest.mark.integration, pytest.mark.timeout(TIMEOUT + 120)]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "schemathesis.toml"
ARTIFACTS = ROOT / "test-artifacts" / "fuzz"
SEED = int(os.environ.get("FUZZ_SEED") or 20261203)
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES") or 50)
PHASES = "examples,coverage,fuzzing,stateful"
FABRIKAM = DEMO_ORGANISATIONS[1]
MIN_CASES = 1000  # per caller: each run generates more at the CI seed (about 2,500)


@dataclass
class FuzzRun:
    returncode: int
    output: str
    cases: int
    seconds: float

    @property
    def summary(self) -> str:
        """The failures (each with its curl command) and the totals."""
        for heading in ("FAILURES", "API Operations:"):
            if heading in self.output:
                return self.output[self.output.find(heading):]
        return self.output


MAKE_RUN_FABRIKAM = "http://127.0.0.1:8081/r4/" + SECOND_TENANT  # the URL schemathesis.toml names


def fuzz_config(stack, into: Path) -> Path:
    """schemathesis.toml with this stack's sandbox in place of `make run`'s ports."""
    text = CONFIG.read_text()
    assert MAKE_RUN_FABRIKAM in text
    config = into / "schemathesis.toml"
    text = text.replace(MAKE_RUN_FABRIKAM, demo_fhir_base(stack.sandbox.cerner_app, FABRIKAM))
    # Failing cases are kept for `schemathesis replay <id>` with the reports, not in the checkout.
    config.write_text(f"{text}\n[cache]\ndirectory = {json.dumps(str(ARTIFACTS / 'cache'))}\n")
    return config


def run_schemathesis(host_url: str, *, config: Path, token: str | None, name: str, seed: int = SEED,
                     max_examples: int = MAX_EXAMPLES, phases: str = PHASES, extra: tuple[str, ...] = ()) -> FuzzRun:
    report_dir = ARTIFACTS / name
    shutil.rmtree(report_dir, ignore_errors=True)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{host_url}/api/openapi.json",
        "--checks", "all", "--phases", phases, "--seed", str(seed), "--max-examples", str(max_examples),
        "--generation-database", "none", "--report", "junit,json", "--report-dir", str(report_dir), *extra,
    ]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    found = re.search(r"Test cases:\s*\n\s*(\d+) generated", output)
    run = FuzzRun(done.returncode, output, int(found.group(1)) if found else 0, seconds)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "output.txt").write_text(output)
    print(f"\nschemathesis [{name}] seed={seed} max-examples={max_examples}: {run.cases} cases in {seconds:.0f} s")
    return run


CALLERS = {
    "admin": lambda stack: stack.sandbox.entra_app.state.issuer.mint_access_token(CONTOSO_TID, "admin"),
    "user": lambda stack: stack.sandbox.entra_app.state.issuer.mint_access_token(CONTOSO_TID, "user"),
    "anonymous": lambda stack: None,
}


@pytest.mark.parametrize("caller", list(CALLERS))
def test_the_api_agrees_with_its_document(visit_stack, caller, tmp_path):
    """Zero failures and zero 5xx (not_a_server_error is one of the checks)."""
    run = run_schemathesis(visit_stack.host_url, config=fuzz_config(visit_stack, tmp_path),
                           token=CALLERS[caller](visit_stack), name=caller)
    assert run.returncode == 0, run.summary
    assert run.cases >= MIN_CASES, run.summary
    assert "Stateful" in run.output and "Test cases:" in run.output


def test_a_loosened_model_fails_the_run(visit_stack, tmp_path, monkeypatch):
    """The run can fail: SMS consents that take 0 and 1 as booleans again (the coercion this issue
    found) are reported, with the request that shows it. The host runs in this process, so the
    loosened parser is what answers schemathesis."""
    from connector.functions import http

    strict = http.parse_body

    def lax(req, model):
        try:
            return strict(req, model)
        except InvalidInput as refused:  # what the parser did before: pydantic's lax mode, 0 taken as false
            try:
                return model.model_validate(json.loads(req.get_body()))
            except (ValueError, TypeError):
                raise refused from None

    monkeypatch.setattr(tenant, "parse_body", lax)
    run = run_schemathesis(visit_stack.host_url, config=fuzz_config(visit_stack, tmp_path),
                           token=CALLERS["admin"](visit_stack), name="loosened", max_examples=5,
                           phases="coverage,fuzzing", extra=("--include-operation-id", "put_sms_consents"))
    assert run.returncode != 0, run.summary
    assert "ST201 Schema-violating request accepted: 1" in run.summary, run.summary
    assert "Errors:" not in run.summary and "Server error" not in run.summary, run.summary
    assert "Invalid component: in body - data: Incorrect type" in run.output
