"""infra/validate.py: the Bicep parses and checkov's policy checks pass (what `make test` enforces).

checkov runs once per directory, for the whole session, the three side by side (about 9 s in
all on two cores): an untouched copy of infra/ (made at the start of the session, so it is what
infra/ holds), a copy with a syntax error and a copy with an insecure storage account added. The
broken copies prove that the validator fails for the right reasons; the untouched one, that
infra/ passes, wherever it is (the skips of .checkov.yaml are passed explicitly).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

INSECURE_STORAGE = """
resource insecure 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stinsecure${take(resourceToken, 8)}'
  location: location
  tags: stampTags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GZRS'
  }
  properties: {
    allowBlobPublicAccess: true
    supportsHttpsTrafficOnly: false
    minimumTlsVersion: 'TLS1_0'
  }
}
"""


def load_validator():
    spec = importlib.util.spec_from_file_location("infra_validate", INFRA / "validate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def validator():
    return load_validator()


@pytest.fixture(scope="session")
def copies(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("infra-copies")
    made = {}
    for name in ("untouched", "broken-syntax", "insecure"):
        made[name] = base / name
        shutil.copytree(INFRA, made[name], ignore=shutil.ignore_patterns("portal-site", "__pycache__", "*.py"))
    stamp = made["broken-syntax"] / "stamp.bicep"
    source = stamp.read_text()
    assert "resource identity 'Microsoft.ManagedIdentity" in source
    stamp.write_text(source.replace("resource identity 'Microsoft.ManagedIdentity", "resource identity = 'Microsoft.ManagedIdentity", 1))
    insecure = made["insecure"] / "stamp.bicep"
    insecure.write_text(insecure.read_text() + INSECURE_STORAGE)
    return made


@pytest.fixture(scope="session")
def results(validator, copies):
    if not validator.CHECKOV.is_file():
        pytest.fail(f"checkov is not installed at {validator.CHECKOV}: `make deps` installs it (requirements-checkov.txt)")
    return validator.validate(list(copies.values()))


def test_infra_parses_and_passes_every_check(results, copies):
    untouched = copies["untouched"]
    assert sorted(p.relative_to(untouched) for p in untouched.rglob("*.bicep")) == \
        sorted(p.relative_to(INFRA) for p in INFRA.rglob("*.bicep"))
    for path in untouched.rglob("*.bicep"):
        assert path.read_bytes() == (INFRA / path.relative_to(untouched)).read_bytes()
    result = results[untouched]
    assert result.ok, "\n".join(result.problems)
    # checkov really looked: the stamp's and the network module's resources were checked.
    assert result.summary["passed"] >= 30 and result.summary["failed"] == 0
    assert result.summary["parsing_errors"] == 0


def test_a_syntax_error_fails_in_pycep_and_in_checkov(results, copies):
    result = results[copies["broken-syntax"]]
    assert not result.ok
    assert any(p.startswith("stamp.bicep: does not parse:") for p in result.problems), result.problems
    # checkov itself exits 0 on a file it cannot parse: the validator reads its report.
    assert "stamp.bicep: checkov could not parse it" in result.problems
    assert result.summary["parsing_errors"] == 1


def test_an_insecure_resource_fails_its_checks(results, copies):
    result = results[copies["insecure"]]
    assert not result.ok
    assert any("CKV_AZURE_3 failed on Microsoft.Storage/storageAccounts.insecure" in p for p in result.problems), \
        result.problems
    # Only the added resource fails: the rest of the copy is the untouched infra/.
    assert all("storageAccounts.insecure" in p for p in result.problems), result.problems


def test_the_command_line_reports_and_exits_by_the_results(validator, results, copies, monkeypatch, capsys):
    monkeypatch.setattr(validator, "validate", lambda directories: {Path(d): results[Path(d)] for d in directories})
    assert validator.main([str(copies["untouched"])]) == 0
    assert "valid (" in capsys.readouterr().out
    assert validator.main([str(copies["broken-syntax"]), str(copies["insecure"])]) == 1
    out = capsys.readouterr().out
    assert out.count("INVALID") == 2 and "CKV_AZURE_3" in out and "does not parse" in out


def test_checkov_is_pinned_apart_from_the_app():
    """Its own venv and requirements file: installing it never moves a pin of the app's."""
    pins = (ROOT / "requirements-checkov.txt").read_text().splitlines()
    pinned = [line for line in pins if line and not line.startswith("#")]
    assert "checkov==3.3.30" in pinned
    assert all("==" in line for line in pinned), [line for line in pinned if "==" not in line]
    for app_file in ("requirements.txt", "requirements-dev.txt", "constraints.txt"):
        assert "checkov" not in (ROOT / app_file).read_text(), app_file
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-checkov.txt" in makefile and "$(CHECKOV_STAMP)" in makefile.split("deps:")[1].splitlines()[0]
