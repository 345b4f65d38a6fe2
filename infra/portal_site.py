"""Assembles the admin portal's Static Web App site: azd's `predeploy` hook (azure.yaml) runs it.

    python3 infra/portal_site.py [--out infra/portal-site] [--no-build]

The portal (portal/) is static: index.html, styles.css and dist/portal.js, which esbuild bundles
from portal/src (`npm run build:portal`; this script runs it unless --no-build). The page asks
its own origin for ``api/portal-config`` (MSAL settings and the stamps list) and ``api/health``
(portal/src/config.js, health.js); on the Functions host those are the stamp's functions. On the
Static Web App, staticwebapp.config.json redirects both (302) to the **home stamp**, the first
of main.bicep's stamps, whose CONNECTOR_PORTAL_STAMPS lists every stamp. The browser follows the
redirect with the portal's origin, which every stamp allows (CORS, main.bicep).

Reads what `azd provision` wrote to the azd environment (azd passes it to hooks as environment
variables): PORTAL_HOME_API_BASE_URL, CONNECTOR_PORTAL_STAMPS, CONNECTOR_ADMIN_AUTHORITY_HOST.
Standard library only: it runs on the deploying machine, outside the project's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
PORTAL = ROOT / "portal"
OUT = Path(__file__).resolve().parent / "portal-site"
# The portal's two same-origin calls (portal/src/config.js, portal/src/health.js).
FORWARDED = ("/api/portal-config", "/api/health")
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


def origin(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"not an https URL: {url!r}")
    return f"https://{parts.netloc}"


def site_config(home_api_base_url: str, stamp_urls: list[str], authority_host: str) -> dict:
    """staticwebapp.config.json: the two redirects, and headers for a page that handles sign-in."""
    home = origin(home_api_base_url)
    authority = origin(authority_host)
    connect = sorted({home, *(origin(u) for u in stamp_urls), authority})
    csp = "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        # The wizard sets a few inline style attributes (animation delays).
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        # The stamps' admin APIs and Entra ID's token endpoint (MSAL refreshes tokens with fetch).
        f"connect-src 'self' {' '.join(connect)}",
        # MSAL's silent renewal falls back to a hidden frame on Entra ID when a refresh token is refused.
        f"frame-src {authority}",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ])
    return {
        "routes": [{"route": path, "redirect": f"{home}{path}", "statusCode": 302} for path in FORWARDED],
        "globalHeaders": {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # index.html names the bundle without a version: always ask whether it changed.
            "Cache-Control": "no-cache",
        },
        "mimeTypes": {".map": "application/json"},
    }


def local_assets(index_html: str) -> list[str]:
    """The files index.html loads from its own folder (href= / src= without a scheme)."""
    refs = re.findall(r"""(?:href|src)\s*=\s*["']([^"'#?]+)["']""", index_html)
    return sorted({r for r in refs if not re.match(r"^[a-z]+:|^//|^#", r, re.IGNORECASE)})


def build_portal() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to bundle the portal (Node.js 20 or later)")
    if not (ROOT / "node_modules" / "esbuild").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)
    subprocess.run([npm, "run", "--silent", "build:portal"], cwd=ROOT, check=True)


def assemble(out: Path, portal: Path, config: dict) -> list[Path]:
    """Empties `out` (but its .gitignore), copies the page, its assets and the bundle, writes the config."""
    out.mkdir(parents=True, exist_ok=True)
    for child in out.iterdir():
        if child.name == ".gitignore":
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    index = (portal / "index.html").read_text(encoding="utf-8")
    files = ["index.html", *local_assets(index)]
    dist = portal / "dist"
    files += [str(p.relative_to(portal)) for p in sorted(dist.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    written = []
    for name in dict.fromkeys(files):
        source = portal / name
        if not source.is_file():
            raise SystemExit(f"{source} is missing: bundle the portal first (npm run build:portal)")
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    config_path = out / "staticwebapp.config.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return [*written, config_path]


def stamp_urls_from(portal_stamps_json: str) -> list[str]:
    if not portal_stamps_json.strip():
        return []
    return [s["api_base_url"] for s in json.loads(portal_stamps_json) if s.get("api_base_url")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--portal", type=Path, default=PORTAL)
    parser.add_argument("--no-build", action="store_true", help="use portal/dist as it is")
    args = parser.parse_args(argv)
    home = os.environ.get("PORTAL_HOME_API_BASE_URL", "")
    if not home:
        print("PORTAL_HOME_API_BASE_URL is not set: run `azd provision` first (or export the outputs of "
              "main.bicep, e.g. `azd env get-values`)", file=sys.stderr)
        return 1
    config = site_config(home, stamp_urls_from(os.environ.get("CONNECTOR_PORTAL_STAMPS", "")),
                         os.environ.get("CONNECTOR_ADMIN_AUTHORITY_HOST") or DEFAULT_AUTHORITY)
    if not args.no_build:
        build_portal()
    written = assemble(args.out, args.portal, config)
    print(f"portal site: {len(written)} files in {args.out}; api/portal-config and api/health -> {origin(home)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
