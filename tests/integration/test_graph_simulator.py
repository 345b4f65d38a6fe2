"""The Graph simulator and the Entra sandbox's client credentials grant, over real sockets.

Checked the way their clients use them: app-only tokens from the token endpoint (https, the
local CA), Graph's token checks and error shapes, createOrGet, subscriptions with the
validation handshake, the meeting pages a browser sees, and notification delivery.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import jwt
import pytest

from dev.sandbox import entra, graph
from dev.sandbox.server import client_ssl_context
from tests.integration.graph_fixtures import GraphStack, Webhook

pytestmark = pytest.mark.integration

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
JORDAN = "80b79bca-a426-4316-920a-c761b7ab6f47"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


@pytest.fixture
def entra_http(graph_sandbox: GraphStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=graph_sandbox.entra_url, verify=client_ssl_context(graph_sandbox.ca_file)) as http:
        yield http


@pytest.fixture
def graph_http(graph_sandbox: GraphStack) -> Iterator[httpx.Client]:
    graph_sandbox.graph.faults.clear()
    with httpx.Client(base_url=graph_sandbox.graph_url) as http:
        yield http
    graph_sandbox.graph.faults.clear()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_credentials(http: httpx.Client, tenant: str = entra.CONTOSO_TID, **form: str) -> httpx.Response:
    body = {"grant_type": "client_credentials", "client_id": entra.GRAPH_APP_CLIENT_ID,
            "client_secret": entra.GRAPH_APP_CLIENT_SECRET, "scope": GRAPH_SCOPE, **form}
    return http.post(f"/{tenant}/oauth2/v2.0/token", data={k: v for k, v in body.items() if v is not None})


# --- Entra: the client credentials grant ------------------------------------------------------


def test_client_credentials_issue_an_app_only_graph_token(entra_http: httpx.Client, graph_sandbox: GraphStack) -> None:
    response = client_credentials(entra_http)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert "refresh_token" not in body and "id_token" not in body
    # Signed by a key the JWKS publishes; v1.0 claims as Entra gives Graph.
    keys = entra_http.get(f"/{entra.CONTOSO_TID}/discovery/v2.0/keys").json()["keys"]
    header = jwt.get_unverified_header(body["access_token"])
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == header["kid"])).key
    claims = jwt.decode(body["access_token"], key, algorithms=["RS256"], audience="https://graph.microsoft.com")
    assert claims["iss"] == f"{graph_sandbox.entra_url}/{entra.CONTOSO_TID}/" and claims["ver"] == "1.0"
    assert claims["tid"] == entra.CONTOSO_TID and claims["appid"] == entra.GRAPH_APP_CLIENT_ID
    assert claims["idtyp"] == "app" and claims["roles"] == ["OnlineMeetings.ReadWrite.All"]
    assert claims["appidacr"] == "1" and "scp" not in claims
    assert claims["oid"] == claims["sub"] != entra.GRAPH_APP_CLIENT_ID
    fabrikam = jwt.decode(client_credentials(entra_http, entra.FABRIKAM_TID).json()["access_token"],
                          options={"verify_signature": False})
    assert fabrikam["tid"] == entra.FABRIKAM_TID and fabrikam["oid"] != claims["oid"]


def test_client_secret_basic_works_too(entra_http: httpx.Client) -> None:
    basic = base64.b64encode(f"{entra.GRAPH_APP_CLIENT_ID}:{quote(entra.GRAPH_APP_CLIENT_SECRET, safe='')}".encode())
    response = entra_http.post(f"/{entra.CONTOSO_TID}/oauth2/v2.0/token",
                               data={"grant_type": "client_credentials", "scope": GRAPH_SCOPE},
                               headers={"Authorization": f"Basic {basic.decode()}"})
    assert response.status_code == 200 and response.json()["access_token"]


@pytest.mark.parametrize(("form", "tenant", "status", "error", "code"), [
    ({"client_secret": "wrong"}, entra.CONTOSO_TID, 401, "invalid_client", 7000215),
    ({"client_secret": None}, entra.CONTOSO_TID, 401, "invalid_client", 7000218),
    ({"scope": "https://graph.microsoft.com/OnlineMeetings.ReadWrite.All"}, entra.CONTOSO_TID, 400,
     "invalid_scope", 1002012),
    ({"scope": "api://someone-else/.default"}, entra.CONTOSO_TID, 400, "invalid_resource", 500011),
    ({}, "organizations", 400, "invalid_request", 900023),
    ({"client_id": entra.API_CLIENT_ID}, entra.CONTOSO_TID, 401, "invalid_client", 700025),  # a public client
])
def test_client_credentials_refusals_are_entras(entra_http: httpx.Client, form, tenant, status, error, code) -> None:
    response = client_credentials(entra_http, tenant, **form)
    body = response.json()
    assert response.status_code == status
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert entra.GRAPH_APP_CLIENT_SECRET not in response.text


def test_unconsented_tenant_has_no_service_principal() -> None:
    from dataclasses import replace

    from starlette.testclient import TestClient

    directory = entra.demo_directory()
    apps = tuple(replace(a, consented_tenants=(entra.CONTOSO_TID,)) if a.client_id == entra.GRAPH_APP_CLIENT_ID
                 else a for a in directory.apps)
    app = entra.create_app(public_url="https://127.0.0.1:1", directory=entra.Directory(directory.tenants, apps))
    with TestClient(app, base_url="https://127.0.0.1:1") as http:
        response = client_credentials(http, entra.FABRIKAM_TID)
        assert response.status_code == 400 and response.json()["error_codes"] == [7000229]
        assert client_credentials(http, entra.CONTOSO_TID).status_code == 200


def test_meetings_account_is_not_offered_and_cannot_sign_in(entra_http: httpx.Client) -> None:
    params = {"client_id": entra.PORTAL_CLIENT_ID, "redirect_uri": "http://127.0.0.1:7071/portal/",
              "response_type": "code", "scope": "openid", "code_challenge": "x" * 43,
              "code_challenge_method": "S256"}
    page = entra_http.get(f"/{entra.CONTOSO_TID}/oauth2/v2.0/authorize", params=params)
    assert page.status_code == 200 and "Avery Lindqvist" in page.text
    assert "Virtual Visits Organizer" not in page.text
    refused = entra_http.post(f"/{entra.CONTOSO_TID}/oauth2/v2.0/authorize",
                              data={**params, "account": entra.CONTOSO_ORGANIZER_OID})
    assert refused.status_code == 400 and "AADSTS50057" in refused.text


def test_discovery_advertises_client_credentials(entra_http: httpx.Client) -> None:
    config = entra_http.get(f"/{entra.CONTOSO_TID}/v2.0/.well-known/openid-configuration").json()
    assert "client_credentials" in config["grant_types_supported"]
    assert "client_secret_post" in config["token_endpoint_auth_methods_supported"]


# --- Graph: tokens --------------------------------------------------------------------------------


def create_or_get(http: httpx.Client, token: str, external_id: str | None = None,
                  user: str = entra.CONTOSO_ORGANIZER_OID, **body) -> httpx.Response:
    payload = {"externalId": external_id or f"vv1-{uuid.uuid4().hex}", "subject": "Video visit", **body}
    return http.post(f"/v1.0/users/{user}/onlineMeetings/createOrGet", json=payload, headers=bearer(token))


def assert_graph_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    return error


def test_token_from_the_token_endpoint_is_accepted(entra_http: httpx.Client, graph_http: httpx.Client) -> None:
    token = client_credentials(entra_http).json()["access_token"]
    assert create_or_get(graph_http, token).status_code == 201


def test_missing_and_bad_tokens_are_401(graph_sandbox: GraphStack, graph_http: httpx.Client) -> None:
    missing = graph_http.post(f"/v1.0/users/{entra.CONTOSO_ORGANIZER_OID}/onlineMeetings/createOrGet",
                              json={"externalId": "x"})
    assert assert_graph_error(missing, 401, "InvalidAuthenticationToken")["message"] == "Access token is empty."
    assert missing.headers["WWW-Authenticate"].startswith("Bearer ")
    expired = create_or_get(graph_http, graph_sandbox.app_token(expires_in=-600))
    assert "expired" in assert_graph_error(expired, 401, "InvalidAuthenticationToken")["message"]
    admin_api = graph_sandbox.issuer.mint_access_token(entra.CONTOSO_TID, "admin")  # a delegated token for our API
    assert "audience" in assert_graph_error(create_or_get(graph_http, admin_api), 401,
                                            "InvalidAuthenticationToken")["message"]
    foreign = create_or_get(graph_http, graph_sandbox.app_token(signed_by="foreign"))
    assert_graph_error(foreign, 401, "InvalidAuthenticationToken")
    forged = create_or_get(graph_http, graph_sandbox.app_token(signed_by="forged"))
    assert_graph_error(forged, 401, "InvalidAuthenticationToken")
    other_issuer = create_or_get(graph_http, graph_sandbox.app_token(
        claims={"iss": f"{graph_sandbox.entra_url}/{entra.FABRIKAM_TID}/"}))
    assert "issuer" in assert_graph_error(other_issuer, 401, "InvalidAuthenticationToken")["message"]


def test_token_without_the_role_is_403(graph_sandbox: GraphStack, graph_http: httpx.Client) -> None:
    response = create_or_get(graph_http, graph_sandbox.app_token(roles=["User.Read.All"]))
    assert assert_graph_error(response, 403, "Forbidden")["message"] == \
        "Insufficient privileges to complete the operation."


# --- Graph: createOrGet -----------------------------------------------------------------------------


def test_create_or_get_answers_201_then_200_with_the_same_meeting(graph_sandbox: GraphStack,
                                                                   graph_http: httpx.Client) -> None:
    token = graph_sandbox.app_token()
    start = utc_now().replace(microsecond=0) + dt.timedelta(hours=2)
    body = {"startDateTime": iso(start), "endDateTime": iso(start + dt.timedelta(minutes=20)),
            "participants": {"organizer": {"identity": {"user": {"id": entra.CONTOSO_ORGANIZER_OID}}}},
            "lobbyBypassSettings": {"scope": "everyone"}}
    first = create_or_get(graph_http, token, "vv1-sim-1", **body)
    again = create_or_get(graph_http, token, "vv1-sim-1", **body)

    assert first.status_code == 201 and again.status_code == 200
    meeting = first.json()
    assert again.json()["id"] == meeting["id"] and again.json()["joinWebUrl"] == meeting["joinWebUrl"]
    assert meeting["externalId"] == "vv1-sim-1" and meeting["subject"] == "Video visit"
    assert meeting["startDateTime"] == iso(start)
    assert meeting["participants"]["organizer"]["identity"]["user"]["id"] == entra.CONTOSO_ORGANIZER_OID
    assert meeting["participants"]["organizer"]["upn"] == "virtual-visits@contoso-clinic.example"
    assert meeting["chatInfo"]["threadId"].startswith("19:meeting_") and meeting["chatInfo"]["threadId"].endswith(
        "@thread.v2")
    assert re.fullmatch(
        re.escape(graph_sandbox.graph_url) + r"/l/meetup-join/19%3ameeting_[A-Za-z0-9]+%40thread\.v2/0\?context="
        r"%7b%22Tid%22%3a%22" + entra.CONTOSO_TID + r"%22%2c%22Oid%22%3a%22" + entra.CONTOSO_ORGANIZER_OID
        + r"%22%7d", meeting["joinWebUrl"])
    decoded = base64.b64decode(meeting["id"]).decode()
    assert decoded == f"1*{entra.CONTOSO_ORGANIZER_OID}*0**{meeting['chatInfo']['threadId']}"
    # Not in createOrGet's documented body: tenant defaults apply until a PATCH.
    assert meeting["lobbyBypassSettings"] == {"scope": "organization", "isDialInBypassEnabled": False}
    assert meeting["allowedPresenters"] == "everyone"
    patched = graph_http.patch(f"/v1.0/users/{entra.CONTOSO_ORGANIZER_OID}/onlineMeetings/{meeting['id']}",
                               json={"allowedPresenters": "organizer", "allowMeetingChat": "limited"},
                               headers=bearer(token))
    assert patched.status_code == 200 and patched.json()["allowedPresenters"] == "organizer"
    assert patched.json()["allowMeetingChat"] == "limited"
    same_id_other_user = create_or_get(graph_http, graph_sandbox.app_token(tenant=entra.FABRIKAM_TID), "vv1-sim-1",
                                       user=entra.FABRIKAM_ORGANIZER_OID)
    assert same_id_other_user.status_code == 201 and same_id_other_user.json()["id"] != meeting["id"]


def test_create_or_get_defaults_and_refusals(graph_sandbox: GraphStack, graph_http: httpx.Client) -> None:
    token = graph_sandbox.app_token()
    made = create_or_get(graph_http, token).json()
    start = dt.datetime.fromisoformat(made["startDateTime"].replace("0Z", "+00:00"))
    end = dt.datetime.fromisoformat(made["endDateTime"].replace("0Z", "+00:00"))
    assert abs((utc_now() - start).total_seconds()) < 60 and end - start == dt.timedelta(hours=1)

    assert_graph_error(graph_http.post(f"/v1.0/users/{entra.CONTOSO_ORGANIZER_OID}/onlineMeetings/createOrGet",
                                       json={"subject": "no id"}, headers=bearer(token)), 400, "BadRequest")
    later = utc_now() + dt.timedelta(hours=1)
    assert_graph_error(create_or_get(graph_http, token, startDateTime=iso(later),
                                     endDateTime=iso(later - dt.timedelta(minutes=5))), 400, "BadRequest")
    assert_graph_error(create_or_get(graph_http, token, endDateTime=iso(later)), 400, "BadRequest")
    assert_graph_error(create_or_get(graph_http, token, user=str(uuid.uuid4())), 404, "NotFound")
    # A Fabrikam token cannot make meetings for a Contoso user.
    assert_graph_error(create_or_get(graph_http, graph_sandbox.app_token(tenant=entra.FABRIKAM_TID)), 404, "NotFound")


def test_access_policy_decides_who_meetings_can_be_made_for(graph_sandbox: GraphStack,
                                                            graph_http: httpx.Client) -> None:
    token = graph_sandbox.app_token()
    denied = create_or_get(graph_http, token, user=JORDAN)
    assert assert_graph_error(denied, 403, "Forbidden")["message"] == "No application access policy found for this app."

    granted = graph_http.post("/_sandbox/access-policies/grant",
                              json={"tenant": "contoso-clinic.example", "user": "jordan.okafor@contoso-clinic.example"})
    assert JORDAN in granted.json()[entra.CONTOSO_TID]
    try:
        assert create_or_get(graph_http, token, user=JORDAN).status_code == 201
    finally:
        revoked = graph_http.post("/_sandbox/access-policies/revoke", json={"tenant": entra.CONTOSO_TID, "user": JORDAN})
        assert JORDAN not in revoked.json()[entra.CONTOSO_TID]
    assert create_or_get(graph_http, token, user=JORDAN).status_code == 403
    assert graph_http.get("/_sandbox/access-policies").json()[entra.CONTOSO_TID] == [entra.CONTOSO_ORGANIZER_OID]


def test_unknown_paths_answer_in_graphs_shape(graph_http: httpx.Client) -> None:
    assert_graph_error(graph_http.get("/v1.0/nothing-here"), 404, "NotFound")


def test_faults_are_mounted(graph_sandbox: GraphStack, graph_http: httpx.Client) -> None:
    armed = graph_http.post("/_sandbox/faults", json={"status": 429, "retry_after": 3, "count": 1})
    assert armed.json()["armed"][0]["status"] == 429
    throttled = create_or_get(graph_http, graph_sandbox.app_token())
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert create_or_get(graph_http, graph_sandbox.app_token()).status_code == 201


def test_simulator_is_loopback_only(graph_sandbox: GraphStack) -> None:
    with pytest.raises(ValueError):
        graph.create_app(public_url="http://graph.example:8090", issuer=graph_sandbox.issuer)


# --- Graph: subscriptions -----------------------------------------------------------------------------


def new_meeting(graph_sandbox: GraphStack, http: httpx.Client) -> dict:
    response = create_or_get(http, graph_sandbox.app_token())
    assert response.status_code == 201
    return response.json()


def resource_of(meeting: dict) -> str:
    return f"communications/onlineMeetings(joinWebUrl='{quote(meeting['joinWebUrl'], safe='')}')/meetingCallEvents"


def subscribe(http: httpx.Client, token: str, meeting: dict, url: str, *, version: str = "beta",
              **overrides) -> httpx.Response:
    body = {"changeType": "updated", "notificationUrl": url, "resource": resource_of(meeting),
            "expirationDateTime": iso(utc_now() + dt.timedelta(hours=1)), "clientState": "secret-state", **overrides}
    return http.post(f"/{version}/subscriptions", json=body, headers=bearer(token))


def test_subscription_handshake_then_201(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                         webhook: Webhook) -> None:
    meeting = new_meeting(graph_sandbox, graph_http)
    response = subscribe(graph_http, graph_sandbox.app_token(), meeting, webhook.url)

    assert response.status_code == 201, response.text
    subscription = response.json()
    assert subscription["resource"] == resource_of(meeting) and subscription["changeType"] == "updated"
    assert subscription["clientState"] == "secret-state" and subscription["applicationId"] == entra.GRAPH_APP_CLIENT_ID
    assert subscription["notificationUrl"] == webhook.url and subscription["includeResourceData"] is False
    assert subscription["@odata.context"].endswith("/beta/$metadata#subscriptions/$entity")
    [validation] = webhook.validations
    assert re.fullmatch(r"Validation: Testing client application reachability for subscription Request-Id: "
                        r"[0-9a-f-]{36}", validation["token"])
    listed = graph_http.get("/_sandbox/subscriptions").json()
    assert any(s["id"] == subscription["id"] and s["apiVersion"] == "beta" for s in listed)


def test_subscription_refusals(graph_sandbox: GraphStack, graph_http: httpx.Client, webhook: Webhook) -> None:
    token = graph_sandbox.app_token()
    meeting = new_meeting(graph_sandbox, graph_http)
    v1 = subscribe(graph_http, token, meeting, webhook.url, version="v1.0")
    assert "beta" in assert_graph_error(v1, 400, "InvalidRequest")["message"]
    too_long = subscribe(graph_http, token, meeting, webhook.url,
                         expirationDateTime=iso(utc_now() + dt.timedelta(minutes=4321)))
    assert "4320 minutes" in assert_graph_error(too_long, 400, "InvalidRequest")["message"]
    assert_graph_error(subscribe(graph_http, token, meeting, webhook.url,
                                 expirationDateTime=iso(utc_now() - dt.timedelta(minutes=1))), 400, "InvalidRequest")
    assert_graph_error(subscribe(graph_http, token, meeting, "https://webhook.example/api/notifications/graph"),
                       400, "BadRequest")
    assert_graph_error(subscribe(graph_http, token, meeting, webhook.url, clientState="x" * 129), 400, "BadRequest")
    assert_graph_error(subscribe(graph_http, token, meeting, webhook.url, changeType="created"), 400, "BadRequest")
    assert_graph_error(subscribe(graph_http, token, meeting, webhook.url, includeResourceData=True), 400, "BadRequest")
    unknown = dict(meeting, joinWebUrl=meeting["joinWebUrl"].replace("meeting_", "meeting_X"))
    assert_graph_error(subscribe(graph_http, token, unknown, webhook.url), 404, "NotFound")
    other_tenant = subscribe(graph_http, graph_sandbox.app_token(tenant=entra.FABRIKAM_TID), meeting, webhook.url)
    assert_graph_error(other_tenant, 404, "NotFound")
    assert webhook.validations == []  # refused before any handshake


@pytest.mark.parametrize(("mode", "message"), [
    ("wrong", "Response must exactly match validationToken query parameter."),
    ("html", "Response must exactly match validationToken query parameter."),
    ("error", "must respond with 200 OK"),
])
def test_failed_handshake_refuses_the_subscription(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                                   webhook: Webhook, mode: str, message: str) -> None:
    webhook.mode = mode
    response = subscribe(graph_http, graph_sandbox.app_token(), new_meeting(graph_sandbox, graph_http), webhook.url)
    assert message in assert_graph_error(response, 400, "InvalidRequest")["message"]
    assert len(webhook.validations) == 1


def test_slow_handshake_times_out(graph_sandbox: GraphStack, graph_http: httpx.Client, webhook: Webhook,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_sandbox.graph.options, "validation_timeout", 0.3)
    webhook.mode, webhook.slow_seconds = "slow", 1.0
    response = subscribe(graph_http, graph_sandbox.app_token(), new_meeting(graph_sandbox, graph_http), webhook.url)
    assert assert_graph_error(response, 400, "InvalidRequest")["message"] == "Subscription validation request timed out."


def test_unreachable_webhook_refuses_the_subscription(graph_sandbox: GraphStack, graph_http: httpx.Client) -> None:
    from dev.sandbox.server import free_port

    url = f"http://127.0.0.1:{free_port()}/api/notifications/graph"
    response = subscribe(graph_http, graph_sandbox.app_token(), new_meeting(graph_sandbox, graph_http), url)
    assert_graph_error(response, 400, "InvalidRequest")


def test_renew_get_and_delete(graph_sandbox: GraphStack, graph_http: httpx.Client, webhook: Webhook) -> None:
    token = graph_sandbox.app_token()
    subscription = subscribe(graph_http, token, new_meeting(graph_sandbox, graph_http), webhook.url).json()
    url = f"/beta/subscriptions/{subscription['id']}"
    later = utc_now().replace(microsecond=0) + dt.timedelta(days=2)

    renewed = graph_http.patch(url, json={"expirationDateTime": iso(later)}, headers=bearer(token))
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] == iso(later)
    assert graph_http.get(url, headers=bearer(token)).json()["expirationDateTime"] == iso(later)
    too_far = graph_http.patch(url, json={"expirationDateTime": iso(utc_now() + dt.timedelta(days=3, minutes=5))},
                               headers=bearer(token))
    assert_graph_error(too_far, 400, "InvalidRequest")
    # Another app's token does not see it.
    other_app = graph_sandbox.issuer.mint_app_token(entra.CONTOSO_TID, entra.GRAPH_APP_CLIENT_ID,
                                                    claims={"appid": str(uuid.uuid4())})
    assert_graph_error(graph_http.get(url, headers=bearer(other_app)), 404, "ResourceNotFound")
    assert graph_http.delete(url, headers=bearer(token)).status_code == 204
    assert_graph_error(graph_http.get(url, headers=bearer(token)), 404, "ResourceNotFound")
    assert_graph_error(graph_http.patch(url, json={"expirationDateTime": iso(later)}, headers=bearer(token)),
                       404, "ResourceNotFound")


# --- meeting pages -------------------------------------------------------------------------------------


def submit(browser: httpx.Client, url: str) -> httpx.Response:
    """What a browser sends for a form with nothing but a button."""
    return browser.post(url, content=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_guest_joins_from_the_meeting_page_and_follows_the_call(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    meeting = new_meeting(graph_sandbox, graph_http)
    key = graph_sandbox.graph.meetings.find(meeting["id"]).key
    with httpx.Client() as browser:
        page = browser.get(meeting["joinWebUrl"])
        assert page.status_code == 200 and '<html lang="en">' in page.text
        assert "Video visit" in page.text and "Enter your name" in page.text and ">Join now</button>" in page.text
        assert 'name="viewport" content="width=device-width, initial-scale=1"' in page.text
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)[1]

        joined = browser.post(f"{graph_sandbox.graph_url}{action}", data={"displayName": "Zyxwv Quokka"})
        assert joined.status_code == 303 and joined.headers["location"] == meeting["joinWebUrl"]
        lobby = browser.get(meeting["joinWebUrl"])
        assert "Someone in the meeting will let you in soon" in lobby.text and 'role="status"' in lobby.text
        [guest] = graph_http.get(f"/_sandbox/meetings/{key}/participants").json()
        assert guest["role"] == "guest" and guest["state"] == "lobby" and guest["displayName"] == "Zyxwv Quokka"
        status_url = f"/_sandbox/meetings/{key}/participants/{guest['id']}"
        assert status_url in lobby.text  # the page polls it

        organizer_view = browser.get(f"{graph_sandbox.graph_url}/_sandbox/meetings/{key}/organizer")
        assert "Zyxwv Quokka" in organizer_view.text and 'aria-label="Admit Zyxwv Quokka"' in organizer_view.text
        assert ">Join as organizer</button>" in organizer_view.text
        joined_view = submit(browser, f"{graph_sandbox.graph_url}/_sandbox/meetings/{key}/organizer/join")
        assert joined_view.status_code == 303 and joined_view.headers["location"].endswith(f"/{key}/organizer")
        admitted = submit(browser, f"{graph_sandbox.graph_url}/_sandbox/meetings/{key}/participants/{guest['id']}/admit")
        assert admitted.status_code == 303
        assert graph_http.get(status_url).json()["state"] == "inMeeting"
        assert "You&#x27;re in the meeting" in browser.get(meeting["joinWebUrl"]).text
        in_view = browser.get(f"{graph_sandbox.graph_url}/_sandbox/meetings/{key}/organizer").text
        assert ">End meeting</button>" in in_view and "Nobody is waiting." in in_view

        assert submit(browser, f"{graph_sandbox.graph_url}/_sandbox/meetings/{key}/end").status_code == 303
        assert graph_http.get(status_url).json()["state"] == "ended"
        assert "The meeting has ended" in browser.get(meeting["joinWebUrl"]).text
    assert "Zyxwv" not in caplog.text  # names are never logged


def test_meeting_page_without_a_name_and_unknown_meeting(graph_sandbox: GraphStack, graph_http: httpx.Client) -> None:
    meeting = new_meeting(graph_sandbox, graph_http)
    key = graph_sandbox.graph.meetings.find(meeting["id"]).key
    empty = graph_http.post(f"/_sandbox/meetings/{key}/guests", data={"displayName": "   "})
    assert empty.status_code == 400 and 'role="alert"' in empty.text
    missing = graph_http.get("/l/meetup-join/19%3ameeting_NOPE%40thread.v2/0")
    assert missing.status_code == 404 and "couldn" in missing.text


def test_control_api_drives_the_roster(graph_sandbox: GraphStack, graph_http: httpx.Client) -> None:
    meeting = new_meeting(graph_sandbox, graph_http)
    [listed] = graph_http.get("/_sandbox/meetings", params={"joinWebUrl": meeting["joinWebUrl"]}).json()
    key = listed["key"]
    assert listed["id"] == meeting["id"] and listed["callActive"] is False

    guest = graph_http.post(f"/_sandbox/meetings/{key}/guests", json={"displayName": "Sam"})
    assert guest.status_code == 201 and guest.json()["state"] == "lobby"
    pid = guest.json()["id"]
    assert graph_http.post(f"/_sandbox/meetings/{key}/participants/{pid}/admit").json()["state"] == "inMeeting"
    assert graph_http.post(f"/_sandbox/meetings/{key}/participants/{pid}/admit").status_code == 409
    assert graph_http.post(f"/_sandbox/meetings/{key}/participants/{pid}/leave").json()["state"] == "left"
    organizer = graph_http.post(f"/_sandbox/meetings/{key}/organizer/join").json()
    assert organizer["role"] == "organizer" and organizer["state"] == "inMeeting"
    assert graph_http.post(f"/_sandbox/meetings/{key}/organizer/join").json()["id"] == organizer["id"]
    ended = graph_http.post(f"/_sandbox/meetings/{key}/end").json()
    assert ended["callActive"] is False
    assert {p["id"]: p["state"] for p in ended["participants"]} == {pid: "left", organizer["id"]: "ended"}
    assert graph_http.get(f"/_sandbox/meetings/{key}/participants/{uuid.uuid4()}").status_code == 404
    assert graph_http.get("/_sandbox/meetings/not-a-meeting").status_code == 404


# --- notifications ---------------------------------------------------------------------------------------


def test_notifications_carry_the_call_events(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                             webhook: Webhook) -> None:
    meeting = new_meeting(graph_sandbox, graph_http)
    subscription = subscribe(graph_http, graph_sandbox.app_token(), meeting, webhook.url).json()
    key = graph_sandbox.graph.meetings.find(meeting["id"]).key
    pid = graph_http.post(f"/_sandbox/meetings/{key}/guests", json={"displayName": "Sam"}).json()["id"]

    started, lobby = (json.loads(body) for body in webhook.wait_for(2))
    item = lobby["value"][0]
    assert set(item) == {"subscriptionId", "subscriptionExpirationDateTime", "changeType", "resource", "clientState",
                         "tenantId", "organizationId", "resourceData"}
    assert item["subscriptionId"] == subscription["id"] and item["clientState"] == "secret-state"
    assert item["resource"] == resource_of(meeting) and item["tenantId"] == entra.CONTOSO_TID
    data = item["resourceData"]
    assert data["@odata.type"] == "#microsoft.graph.callevent" and data["@odata.id"] == resource_of(meeting)
    assert data["eventType"] == "rosterUpdated"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", data["eventDateTime"])
    assert data["participants@delta"] == [
        {"info": {"identity": {"guest": {"id": pid, "displayName": "Sam"}}}, "isInLobby": True, "id": pid}]
    assert started["value"][0]["resourceData"]["eventType"] == "callStarted"
    assert "validationTokens" not in lobby


def test_ids_only_basic_notifications_when_configured(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                                      webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_sandbox.graph.options, "basic_notifications_carry_event", False)
    meeting = new_meeting(graph_sandbox, graph_http)
    subscribe(graph_http, graph_sandbox.app_token(), meeting, webhook.url)
    graph_sandbox.graph.meetings.join_organizer(graph_sandbox.graph.meetings.find(meeting["id"]))
    for body in webhook.wait_for(2):
        assert set(json.loads(body)["value"][0]["resourceData"]) == {"@odata.type", "@odata.id", "id"}


def test_deliveries_are_retried_on_5xx_and_logged(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                                  webhook: Webhook) -> None:
    meeting = new_meeting(graph_sandbox, graph_http)
    subscription = subscribe(graph_http, graph_sandbox.app_token(), meeting, webhook.url).json()
    webhook.statuses.extend([503, 500])  # the first delivery fails twice, then goes through
    graph_sandbox.graph.meetings.join_organizer(graph_sandbox.graph.meetings.find(meeting["id"]))

    assert graph_sandbox.graph.notifier.wait_idle(10)
    log = [e for e in graph_http.get("/_sandbox/notifications").json() if e["subscriptionId"] == subscription["id"]]
    assert [(e["eventType"], e["attempt"], e["status"], e["outcome"]) for e in log] == [
        ("callStarted", 1, 503, "retrying"), ("callStarted", 2, 500, "retrying"), ("callStarted", 3, 202, "delivered"),
        ("rosterUpdated", 1, 202, "delivered"),
    ]
    assert [json.loads(b)["value"][0]["resourceData"]["eventType"] for b in webhook.received()] == [
        "callStarted", "rosterUpdated"]


def test_deliveries_give_up_and_4xx_is_final(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                             webhook: Webhook) -> None:
    meeting = new_meeting(graph_sandbox, graph_http)
    subscription = subscribe(graph_http, graph_sandbox.app_token(), meeting, webhook.url).json()
    webhook.statuses.extend([500, 500, 500, 500, 400])
    graph_sandbox.graph.meetings.join_organizer(graph_sandbox.graph.meetings.find(meeting["id"]))

    assert graph_sandbox.graph.notifier.wait_idle(10)
    log = [e for e in graph_sandbox.graph.notifier.deliveries() if e["subscriptionId"] == subscription["id"]]
    assert [(e["attempt"], e["outcome"]) for e in log] == [
        (1, "retrying"), (2, "retrying"), (3, "retrying"), (4, "failed"), (1, "refused")]
    assert webhook.received() == []


def test_deliveries_stop_with_the_subscription(graph_sandbox: GraphStack, graph_http: httpx.Client,
                                               webhook: Webhook) -> None:
    token = graph_sandbox.app_token()
    meeting = new_meeting(graph_sandbox, graph_http)
    subscription = subscribe(graph_http, token, meeting, webhook.url).json()
    assert graph_http.delete(f"/beta/subscriptions/{subscription['id']}", headers=bearer(token)).status_code == 204
    graph_sandbox.graph.meetings.join_organizer(graph_sandbox.graph.meetings.find(meeting["id"]))
    assert graph_sandbox.graph.notifier.wait_idle(5)
    assert webhook.received() == []
