"""infra/portal_site.py: the admin portal's Static Web App site that azd deploys (azure.yaml's predeploy)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOME = "https://func-vvc-us-abc123.azurewebsites.net"
STAMPS = [
    {"region": "us", "label": "United States", "api_base_url": HOME},
    {"region": "eu", "label": "Europe", "api_base_url": "https://func-vvc-eu-def456.azurewebsites.net/"},
]


@pytest.fixture(scope="module")
def site():
    spec = importlib.util.spec_from_file_location("infra_portal_site", ROOT / "infra" / "portal_site.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_portals_same_origin_calls_are_redirected_to_the_home_stamp(site):
    config = site.site_config(HOME + "/", [s["api_base_url"] for s in STAMPS], "https://login.microsoftonline.com/")
    assert config["routes"] == [
        {"route": "/api/portal-config", "redirect": f"{HOME}/api/portal-config", "statusCode": 302},
        {"route": "/api/health", "redirect": f"{HOME}/api/health", "statusCode": 302},
    ]
    # Exactly the relative calls the portal makes to the origin that serves it.
    source = "\n".join(p.read_text() for p in (ROOT / "portal" / "src").rglob("*.js"))
    same_origin = set(re.findall(r"""fetch\(\s*["'](api/[^"']+)["']""", source))
    assert {f"/{path}" for path in same_origin} == set(site.FORWARDED)


def test_the_page_may_call_every_stamp_and_entra_id_and_nothing_else(site):
    config = site.site_config(HOME, [s["api_base_url"] for s in STAMPS], "https://login.microsoftonline.com/")
    policy = dict(part.split(" ", 1) for part in config["globalHeaders"]["Content-Security-Policy"].split("; "))
    assert policy["connect-src"].split() == ["'self'", "https://func-vvc-eu-def456.azurewebsites.net",
                                             HOME, "https://login.microsoftonline.com"]
    assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert policy["frame-src"] == "https://login.microsoftonline.com"
    with pytest.raises(ValueError):
        site.site_config("http://func.example.net", [], "https://login.microsoftonline.com")


def test_the_site_holds_the_page_its_assets_and_the_bundle(site, tmp_path):
    portal = tmp_path / "portal"
    (portal / "dist").mkdir(parents=True)
    (portal / "index.html").write_text('<link rel="stylesheet" href="styles.css">'
                                       '<script type="module" src="dist/portal.js"></script>'
                                       '<a href="https://learn.microsoft.com/">docs</a><a href="#main">skip</a>')
    (portal / "styles.css").write_text("body{}")
    (portal / "dist" / "portal.js").write_text("export {}")
    (portal / "dist" / "portal.js.map").write_text("{}")
    (portal / "src").mkdir()
    (portal / "src" / "main.js").write_text("// sources stay home")
    out = tmp_path / "site"
    out.mkdir()
    (out / ".gitignore").write_text("*\n!.gitignore\n")
    (out / "stale.js").write_text("from an older deploy")
    config = site.site_config(HOME, [], "https://login.microsoftonline.com")
    site.assemble(out, portal, config)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [".gitignore", "dist/portal.js", "dist/portal.js.map", "index.html", "staticwebapp.config.json",
                     "styles.css"]
    assert json.loads((out / "staticwebapp.config.json").read_text()) == config
    (portal / "styles.css").unlink()
    with pytest.raises(SystemExit):
        site.assemble(out, portal, config)


def test_the_real_portal_page_loads_only_files_the_site_carries(site):
    index = (ROOT / "portal" / "index.html").read_text()
    assets = site.local_assets(index)
    assert assets == ["dist/portal.js", "styles.css"]
    assert (ROOT / "portal" / "styles.css").is_file()
    # dist/portal.js is esbuild's output (`npm run build:portal`, which the hook runs first).
    build = json.loads((ROOT / "package.json").read_text())["scripts"]["build:portal"]
    assert "--outfile=portal/dist/portal.js" in build


def test_it_needs_the_provisioned_stamps(site, monkeypatch, capsys):
    monkeypatch.delenv("PORTAL_HOME_API_BASE_URL", raising=False)
    assert site.main(["--no-build"]) == 1
    assert "azd provision" in capsys.readouterr().err


def test_it_reads_what_main_bicep_outputs(site, monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_HOME_API_BASE_URL", HOME)
    monkeypatch.setenv("CONNECTOR_PORTAL_STAMPS", json.dumps(STAMPS))
    monkeypatch.setenv("CONNECTOR_ADMIN_AUTHORITY_HOST", "https://login.microsoftonline.us/")
    portal = tmp_path / "portal"
    (portal / "dist").mkdir(parents=True)
    (portal / "index.html").write_text('<script src="dist/portal.js"></script>')
    (portal / "dist" / "portal.js").write_text("")
    assert site.main(["--no-build", "--portal", str(portal), "--out", str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "staticwebapp.config.json").read_text())
    csp = config["globalHeaders"]["Content-Security-Policy"]
    assert "https://func-vvc-eu-def456.azurewebsites.net" in csp and "https://login.microsoftonline.us" in csp
