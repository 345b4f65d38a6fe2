"""The admin's whole setup journey in the portal, in headless Chromium, against one local stamp.

Everything runs in-process on loopback: Azurite (session fixture), the Entra ID sandbox
issuer over https (MSAL insists), the Cerner SMART + FHIR simulator (a Cerner tenant per demo
organisation), the ACS phone-numbers simulator and the local Functions host serving the built
portal and the admin API. Each step writes a screenshot under test-artifacts/<test name>/.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from connector.composition import container
from connector.domain.endpoint import EndpointChange
from connector.settings import get_settings
from dev.demo import DEMO_ORGANISATIONS, demo_fhir_base, register_demo_clients
from dev.host import LocalFunctionsHost
from dev.sandbox import acs, cerner, entra
from dev.seed import seed_demo_tenant
from dev.sandbox.server import LoopbackServer, free_port
from dev.sandbox.tls import ensure_local_tls
from dev.stack import ACS_SANDBOX_KEY, Ports, connector_environment

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "portal" / "dist" / "portal.js"
TIMEOUT = 15_000  # ms, for anything that crosses the API
ADMIN = "Avery Lindqvist"  # Contoso Clinic's Global Administrator in the sandbox directory
CLINIC = "Contoso main campus"


@pytest.fixture(scope="module", autouse=True)
def built_portal():
    """`make test` builds the portal first; a bare pytest run builds it when it is missing."""
    if not BUNDLE.exists():
        subprocess.run(["npm", "run", "--silent", "build:portal"], cwd=ROOT, check=True)


@dataclass
class Stack:
    host_url: str
    fhir_base: str
    location_ids: list[str]
    timezone: str


@pytest.fixture(scope="module")
def portal_sandbox(tmp_path_factory):
    """The issuer (https, own CA), the Cerner simulator and the ACS simulator, shared by the module."""
    tls = ensure_local_tls(tmp_path_factory.mktemp("tls"))
    entra_port, cerner_port, acs_port = free_port(), free_port(), free_port()
    entra_app = entra.create_app(public_url=f"https://127.0.0.1:{entra_port}")
    cerner_app = cerner.create_app(public_url=f"http://127.0.0.1:{cerner_port}")
    acs_app = acs.create_app(public_url=f"http://127.0.0.1:{acs_port}", access_key=ACS_SANDBOX_KEY)
    with LoopbackServer(entra_app, entra_port, certfile=tls.cert_file, keyfile=tls.key_file, name="entra"), \
            LoopbackServer(cerner_app, cerner_port, name="cerner"), \
            LoopbackServer(acs_app, acs_port, name="acs"):
        yield {"ports": Ports(entra=entra_port, cerner=cerner_port, acs=acs_port),
               "ca_file": tls.ca_file, "cerner": cerner_app.state.cerner, "cerner_app": cerner_app,
               "entra_app": entra_app}


@pytest.fixture
def stack(portal_sandbox, azurite, storage_env, unique_prefix, monkeypatch) -> Stack:
    """One stamp ("us") on a free port, with the admin, portal and ACS settings pointing at the sandbox."""
    port = free_port()
    host_url = f"http://127.0.0.1:{port}"
    ports = replace(portal_sandbox["ports"], host=port)
    env = {
        **connector_environment(azurite, ports, portal_sandbox["ca_file"]),  # as `make run`, on this test's ports
        **storage_env,  # unique table and queue names for this run
        "CONNECTOR_PROVISIONING_QUEUE": f"{unique_prefix}-provision",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    container.cache_clear()
    container().tables.create_missing()
    sim = portal_sandbox["cerner"]
    with LocalFunctionsHost(ROOT, port=port, poll_interval=0.2):
        yield Stack(host_url, sim.urls.fhir_base, [loc["id"] for loc in sim.seed.locations], sim.tz.key)
    get_settings.cache_clear()
    container.cache_clear()


# --- steps of the journey, shared by both tests -------------------------------------------


def sign_in_and_pick_region(page: Page, stack: Stack, screenshot=None, admin: str = ADMIN) -> None:
    page.goto(f"{stack.host_url}/")
    sign_in = page.get_by_role("button", name="Sign in")
    expect(sign_in).to_be_visible(timeout=TIMEOUT)
    if screenshot:
        screenshot("01-sign-in")
    sign_in.click()
    account = page.get_by_role("button", name=admin)
    expect(account).to_be_visible(timeout=TIMEOUT)  # the sandbox issuer's account picker
    if screenshot:
        screenshot("02-account-picker")
    account.click()

    # Back on the portal: a new tenant is found in no stamp, so the admin picks the region.
    expect(page.get_by_role("heading", name="Pick a region")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#session-user")).to_have_text(admin)
    page.get_by_role("button", name="Continue").click()  # nothing picked yet: explained at the group
    expect(page.get_by_text("Pick a region to continue.")).to_be_visible()
    page.get_by_role("radio", name=re.compile("United States")).check()
    if screenshot:
        screenshot("03-pick-region")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=2, name="Configuration information")).to_be_visible(timeout=TIMEOUT)


def endpoint_form(page: Page):
    return page.get_by_role("form", name="Add a FHIR base URL")


def add_simulator_endpoint(page: Page, stack: Stack, screenshot=None) -> None:
    form = endpoint_form(page)
    form.get_by_label("FHIR base URL").fill(stack.fhir_base)
    form.get_by_role("radio", name=re.compile("^Test")).check()
    form.get_by_label("Display name").fill(CLINIC)
    form.get_by_label("Department location ids").fill(", ".join(stack.location_ids))
    form.get_by_label("Time zone").fill(stack.timezone)
    form.get_by_label("Provider app client id").fill("demo-provider-app")
    form.get_by_label("Patient app client id").fill("demo-patient-app")
    form.get_by_label("Backend service client id").fill("demo-backend-service")
    form.get_by_role("button", name="Validate").click()
    expect(form.get_by_role("heading", name="Validation passed")).to_be_visible(timeout=TIMEOUT)
    checks = form.locator("li.check")
    assert checks.count() >= 4
    for verdict in checks.locator(".verdict").all_inner_texts():
        assert verdict.strip().split()[-1] in ("Passed", "Skipped"), verdict
    expect(form.get_by_role("status").filter(has_text="Validation passed")).to_be_visible()
    if screenshot:
        page.wait_for_timeout(1200)  # the checks appear one by one
        screenshot("04-validated-test-endpoint")
    form.get_by_role("button", name="Save", exact=True).click()
    card = page.get_by_role("article", name=CLINIC)
    expect(card).to_be_visible(timeout=TIMEOUT)
    expect(card).to_contain_text(stack.fhir_base)
    expect(card).to_contain_text("test")
    if screenshot:
        screenshot("05-endpoint-saved")


def go_to_step(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Setup steps").get_by_role("button", name=name).click()
    heading = page.get_by_role("heading", level=2, name=name)
    expect(heading).to_be_visible(timeout=TIMEOUT)
    expect(heading).to_be_focused()  # focus follows the step


# --- the tests ------------------------------------------------------------------------


def test_admin_sets_up_the_connector_end_to_end(stack, page, screenshot):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.host_url)
    requested: list[str] = []
    page.context.on("request", lambda request: requested.append(request.url))
    sign_in_and_pick_region(page, stack, screenshot)

    # Step 1: a URL that validates against the Cerner simulator, in the test environment.
    expect(page.get_by_text("No FHIR base URL yet")).to_be_visible()
    add_simulator_endpoint(page, stack, screenshot)

    # Settings can be changed later (PATCH with the endpoint's ETag).
    page.get_by_role("button", name=f"Change {CLINIC}").click()
    change = page.get_by_role("form", name=f"Change {CLINIC}")
    expect(change).to_be_visible()
    change.get_by_label("Department location ids").fill(stack.location_ids[0])
    change.get_by_role("button", name="Save changes").click()
    card = page.get_by_role("article", name=CLINIC)
    expect(card.locator("dd").filter(has_text=stack.location_ids[0])).to_have_text(stack.location_ids[0], timeout=TIMEOUT)
    expect(endpoint_form(page)).to_be_visible()

    # A loopback URL in production fails, and the failure is explained check by check...
    form = endpoint_form(page)
    url = form.get_by_label("FHIR base URL")
    url.fill("https://127.0.0.1:9/r4/x")
    form.get_by_role("radio", name=re.compile("^Production")).check()
    form.get_by_label("Display name").fill("Loopback (must fail)")
    form.get_by_role("button", name="Validate").click()
    expect(form.get_by_role("heading", name="Validation failed")).to_be_visible(timeout=TIMEOUT)
    failed = form.locator("li.check.fail")
    expect(failed.first).to_be_visible()
    assert failed.count() >= 1
    assert all(text.strip() for text in failed.locator(".check-text").all_inner_texts())
    expect(form.get_by_role("status").filter(has_text="Validation failed")).to_be_visible()
    page.wait_for_timeout(1200)
    screenshot("06-production-loopback-fails-validation")

    # ... and saving it is refused, with the error next to the URL field.
    form.get_by_role("button", name="Save", exact=True).click()
    expect(url).to_have_attribute("aria-invalid", "true", timeout=TIMEOUT)
    error_id = url.get_attribute("id") + "-error"
    error = page.locator(f"#{error_id}")
    expect(error).to_be_visible()
    assert error_id in url.get_attribute("aria-describedby").split()
    expect(url).to_be_focused()
    expect(page.get_by_role("article")).to_have_count(1)  # nothing half-written
    page.wait_for_timeout(1200)
    screenshot("07-production-loopback-refused-on-save")

    # Step 2: SMS. Both consents, then a toll-free number from the ACS simulator.
    page.get_by_role("button", name="Next: SMS notifications").click()
    expect(page.get_by_role("heading", level=2, name="SMS notifications")).to_be_focused(timeout=TIMEOUT)
    terms = page.get_by_role("checkbox", name=re.compile("SMS terms"))
    data = page.get_by_role("checkbox", name=re.compile("data processing"))
    expect(terms).not_to_be_checked(timeout=TIMEOUT)
    terms.check()
    data.check()
    page.get_by_role("button", name="Save consents").click()
    expect(page.get_by_role("status").filter(has_text="SMS is on")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Given ").first).to_be_visible()
    screenshot("08-sms-consents")

    page.get_by_role("button", name="Generate a number").click()
    progress = page.locator(".operation-status")
    expect(progress).to_have_attribute("role", "status")
    expect(progress).to_contain_text(re.compile("searching|purchasing", re.I), timeout=TIMEOUT)
    screenshot("09-number-in-progress")
    expect(progress).to_contain_text("ready to link", timeout=90_000)
    number = re.search(r"\+1\d{10}", progress.inner_text()).group(0)
    numbers = page.get_by_role("list", name="Phone numbers")
    expect(numbers).to_contain_text(number)
    expect(numbers).to_contain_text("not linked")
    screenshot("10-number-generated")

    # Link it to the endpoint.
    select = page.get_by_label(f"Number for {CLINIC}")
    select.select_option(number)
    page.get_by_role("button", name="Link", exact=True).click()
    expect(page.get_by_role("status").filter(has_text=f"Linked {number}")).to_be_visible(timeout=TIMEOUT)
    expect(numbers).to_contain_text(f"linked to {CLINIC}")
    # Someone changes the endpoint meanwhile (another tab): the ETag this page holds is stale, so
    # unlinking is refused (409), the page says so and shows what is saved; the next try works.
    deps = container()
    [stored] = deps.endpoints.list_endpoints(entra.CONTOSO_TID)
    deps.admin_setup.change_endpoint(entra.CONTOSO_TID, stored.item.endpoint_id,
                                     EndpointChange(timezone="America/Denver"), stored.etag)
    page.get_by_role("button", name=f"Unlink {number} from {CLINIC}").click()
    expect(page.get_by_role("status").filter(has_text=f"Someone changed {CLINIC} meanwhile")).to_be_visible(
        timeout=TIMEOUT)
    expect(numbers).to_contain_text(f"linked to {CLINIC}")
    assert deps.endpoints.list_endpoints(entra.CONTOSO_TID)[0].item.linked_number == number
    screenshot("11a-changed-meanwhile")
    unlink = page.get_by_role("button", name=f"Unlink {number} from {CLINIC}")
    expect(unlink).to_be_visible()
    unlink.click()  # unlinking works too; then link it again
    expect(page.get_by_role("status").filter(has_text=f"Unlinked the number from {CLINIC}")).to_be_visible(timeout=TIMEOUT)
    expect(numbers).to_contain_text("not linked")
    page.get_by_label(f"Number for {CLINIC}").select_option(number)
    page.get_by_role("button", name="Link", exact=True).click()
    expect(numbers).to_contain_text(f"linked to {CLINIC}", timeout=TIMEOUT)
    screenshot("11-number-linked")

    # Step 3: the integration record, on this stamp's own origin, copyable and downloadable.
    nav_review = page.get_by_role("navigation", name="Setup steps").get_by_role("button", name="Review and finish")
    nav_review.focus()
    page.keyboard.press("Enter")  # the steps are reachable by keyboard
    expect(page.get_by_role("heading", level=2, name="Review and finish")).to_be_focused(timeout=TIMEOUT)
    expect(nav_review).to_have_attribute("aria-current", "step")
    record = page.get_by_role("article", name=f"Integration record for {CLINIC}")
    expect(record).to_be_visible(timeout=TIMEOUT)
    expect(record).to_contain_text(f"{stack.host_url}/api/launch/")
    codes = record.locator("code").all_inner_texts()
    launch_urls = [c for c in codes if "/api/launch/" in c]
    assert len(launch_urls) >= 2 and all(u.startswith(stack.host_url) for u in launch_urls), codes
    assert "demo-provider-app" in codes
    screenshot("12-integration-record")

    record.get_by_role("button", name=f"Copy Provider launch URL for {CLINIC}").click()
    expect(page.get_by_role("status").filter(has_text="Copied the Provider launch URL")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith(f"{stack.host_url}/api/launch/"), copied

    with page.expect_download() as download_info:
        record.get_by_role("button", name=re.compile("Download the integration record")).click()
    download = download_info.value
    assert download.suggested_filename.endswith(".json")
    saved = json.loads(Path(download.path()).read_text())
    assert saved["base_url"] == stack.fhir_base
    assert saved["provider_launch_url"].startswith(stack.host_url)
    assert saved["client_ids"]["provider"] == "demo-provider-app"

    page.get_by_role("button", name="Finish", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Setup is complete")).to_be_visible()
    screenshot("13-finished")

    # Coming back later finds the tenant's stamp without asking for the region again.
    page.reload()
    expect(page.get_by_role("heading", level=2, name="Review and finish")).to_be_visible(timeout=TIMEOUT)
    go_to_step(page, "Configuration information")
    expect(page.get_by_role("article", name=CLINIC)).to_contain_text(number)

    # No CDN: every request the portal made went to this machine (the stamp and the sandbox issuer).
    web = [url for url in requested if urlsplit(url).scheme in ("http", "https")]
    assert web and all(urlsplit(url).hostname == "127.0.0.1" for url in web), sorted(set(web))

    # Sign out: back to the sign-in screen.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=TIMEOUT)
    screenshot("14-signed-out")


def test_admin_portal_is_usable_at_360px(stack, page, screenshot):
    page.set_viewport_size({"width": 360, "height": 740})

    def no_horizontal_scroll(label: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{label}: the page is {width}px wide"

    sign_in_and_pick_region(page, stack)
    no_horizontal_scroll("step 1")
    add_simulator_endpoint(page, stack)
    page.wait_for_timeout(1200)
    no_horizontal_scroll("step 1 with an endpoint")
    screenshot("360-configuration")
    go_to_step(page, "SMS notifications")
    expect(page.get_by_label(f"Number for {CLINIC}")).to_be_visible(timeout=TIMEOUT)
    no_horizontal_scroll("step 2")
    screenshot("360-sms")
    go_to_step(page, "Review and finish")
    expect(page.get_by_role("article", name=f"Integration record for {CLINIC}")).to_be_visible(timeout=TIMEOUT)
    no_horizontal_scroll("step 3")
    screenshot("360-review")


def test_the_second_demo_organisation_sets_up_its_own_cerner_tenant(stack, portal_sandbox, page, screenshot):
    """`make run`'s stamp: Contoso Clinic is seeded on the sandbox's first Cerner tenant. Fabrikam's
    admin (Samira Haddad) tries that URL, is told what to do without being told whose it is, adds
    Fabrikam's own Cerner tenant's URL and finishes the wizard."""
    cerner_app = portal_sandbox["cerner_app"]
    contoso, fabrikam = DEMO_ORGANISATIONS
    demo = register_demo_clients(cerner_app, portal_sandbox["entra_app"], host_url=stack.host_url)
    seed_demo_tenant(container(), demo)
    contoso_url, fabrikam_url = demo_fhir_base(cerner_app, contoso), demo_fhir_base(cerner_app, fabrikam)
    assert demo.fhir_base_url == contoso_url != fabrikam_url
    clinic = "Fabrikam clinic"

    sign_in_and_pick_region(page, stack, admin=fabrikam.admin)
    form = endpoint_form(page)
    url = form.get_by_label("FHIR base URL")
    url.fill(contoso_url)  # the first URL a new user finds
    form.get_by_role("radio", name=re.compile("^Test")).check()
    form.get_by_label("Display name").fill(clinic)
    form.get_by_label("Department location ids").fill(", ".join(stack.location_ids))
    form.get_by_label("Time zone").fill(stack.timezone)
    form.get_by_role("button", name="Save", exact=True).click()
    expect(url).to_have_attribute("aria-invalid", "true", timeout=TIMEOUT)
    error = page.locator(f"#{url.get_attribute('id')}-error")
    expect(error).to_contain_text("already registered to another organisation in this stamp")
    expect(error).to_contain_text("each Cerner domain has its own tenant id")
    expect(error).to_contain_text("Oracle Health contact")
    expect(url).to_be_focused()
    for secret in ("Contoso", contoso.tenant_id, "demo-clinic"):
        assert secret not in page.content()
    expect(page.get_by_role("article")).to_have_count(0)
    page.wait_for_timeout(300)
    screenshot("01-another-organisations-url")

    url.fill(fabrikam_url)
    form.get_by_role("button", name="Validate").click()
    expect(form.get_by_role("heading", name="Validation passed")).to_be_visible(timeout=TIMEOUT)
    form.get_by_role("button", name="Save", exact=True).click()
    card = page.get_by_role("article", name=clinic)
    expect(card).to_contain_text(fabrikam_url, timeout=TIMEOUT)
    screenshot("02-own-url-saved")

    go_to_step(page, "Review and finish")
    record = page.get_by_role("article", name=f"Integration record for {clinic}")
    expect(record).to_contain_text(f"{stack.host_url}/api/launch/", timeout=TIMEOUT)
    page.get_by_role("button", name="Finish", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Setup is complete")).to_be_visible()
    screenshot("03-finished")
    [stored] = container().endpoints.list_endpoints(fabrikam.tenant_id)
    assert (stored.item.base_url, stored.item.cerner_tenant_id) == (fabrikam_url, fabrikam.cerner_tenant_id)


def test_a_user_who_is_not_an_admin_is_told_so(stack, page, screenshot):
    page.goto(f"{stack.host_url}/")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Jordan Okafor").click()  # an ordinary Contoso user
    expect(page.get_by_role("heading", name="Not an administrator")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_role("heading", name="Pick a region")).to_have_count(0)  # nothing onboarded
    screenshot("not-an-admin")
