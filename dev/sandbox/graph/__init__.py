"""A Microsoft Graph simulator on loopback: Teams online meetings and their call events.

It speaks the Graph calls the connector's meetings adapter makes with msgraph-sdk, checking
app-only tokens from the Entra sandbox (:mod:`dev.sandbox.entra`) as Graph would, so the
production adapter runs against it unchanged (only the base URL, authority, client id and
secret, and the CA file differ):

- ``POST /v1.0/users/{userId}/onlineMeetings/createOrGet``  201 when made, 200 when it exists
  (per tenant, organizer and externalId); 403 without an application access policy
- ``GET|PATCH /v1.0/users/{userId}/onlineMeetings/{meetingId}``  read, change lobby/presenter/chat options
- ``POST /beta/subscriptions``, ``GET|PATCH|DELETE /beta/subscriptions/{id}``  meetingCallEvents
  subscriptions, with the synchronous validation handshake
- change notifications to each subscription's webhook, from a background thread, for every
  call event (callStarted, rosterUpdated, callEnded), plain or encrypted (rich notifications)
- ``GET {joinWebUrl}``: the meeting page a guest joins from (lobby, admitted, ended), and
  ``/_sandbox/meetings/{key}/organizer``: the organizer's view (join, admit, end)
- ``/_sandbox/...`` controls (:mod:`.sandbox_api`) and the shared ``/_sandbox/faults``

Build it with :func:`create_app` (``issuer`` = the Entra sandbox app's ``app.state.issuer``) and
serve it with :class:`dev.sandbox.server.LoopbackServer` over http: kiota's Azure
authentication provider allows http for ``localhost`` and ``127.0.0.1``.
"""

from .app import GraphSandbox, create_app
from .meetings import IN_MEETING, LOBBY, AccessPolicies, Meeting, MeetingStore


def connector_environment(*, graph_url: str, entra_url: str) -> dict[str, str]:
    """The connector's ``CONNECTOR_GRAPH_*`` settings for a simulator at ``graph_url`` whose tokens
    come from the Entra sandbox at ``entra_url`` (``CONNECTOR_OUTBOUND_CA_FILE`` must trust its CA)."""
    from ..entra import GRAPH_APP_CLIENT_ID, GRAPH_APP_CLIENT_SECRET

    return {
        "CONNECTOR_GRAPH_BASE_URL": f"{graph_url.rstrip('/')}/v1.0",
        "CONNECTOR_GRAPH_AUTHORITY_HOST": entra_url.rstrip("/"),
        "CONNECTOR_GRAPH_CLIENT_ID": GRAPH_APP_CLIENT_ID,
        "CONNECTOR_GRAPH_CLIENT_SECRET": GRAPH_APP_CLIENT_SECRET,
    }


__all__ = ["IN_MEETING", "LOBBY", "AccessPolicies", "GraphSandbox", "Meeting", "MeetingStore", "connector_environment",
           "create_app"]
