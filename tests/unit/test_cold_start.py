"""Importing the app loads no heavy SDK: they are imported where used (cold start matters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["fhir.resources", "jwt", "azure.identity", "msgraph", "azure.communication.phonenumbers",
         "azure.communication.sms", "httpx", "azure.data.tables", "azure.storage.queue", "cryptography",
         "opentelemetry", "azure.monitor"]


def test_function_app_import_loads_no_heavy_sdk():
    probe = f"import sys, json, function_app; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_every_function_is_registered():
    probe = "import json, function_app; print(json.dumps([f.get_function_name() for f in function_app.app.get_functions()]))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    names = json.loads(out.stdout)
    assert {"health", "openapi", "portal_config", "add_endpoint", "provision_number_worker"} <= set(names)
    assert len(names) == len(set(names))
