"""Microsoft Graph's answers as the connector's errors.

    403 on a meeting call        MeetingAccessDenied (502): no application access policy
    429                          UpstreamUnavailable (503) with Graph's Retry-After
    5xx, timeouts, no answer     UpstreamUnavailable (503)
    any other 4xx                UpstreamError (502)

Messages are sentences for the admin or the clinician's support desk; they never carry a
response body, a name or a token (a Graph error code or an AADSTS number at most).
"""

from __future__ import annotations

from collections.abc import Mapping

from connector.adapters.net.headers import MAX_RETRY_AFTER_SECONDS, retry_after_seconds  # noqa: F401 - re-exported
from connector.errors import UpstreamError, UpstreamUnavailable



class MeetingAccessDenied(UpstreamError):
    """Graph answered 403 to a meeting call: the organizer account has no Teams application
    access policy that names the connector's app (or the app lacks its Graph permission)."""

    http_status = 502
    code = "meeting_access_denied"
    DEFAULT_MESSAGE = (
        "Microsoft Teams refused to let the connector make the meeting for the organizer account: the "
        "account has no Teams application access policy for the connector's app. A Teams administrator "
        "creates one with New-CsApplicationAccessPolicy (naming the connector's app id) and grants it to "
        "the organizer account with Grant-CsApplicationAccessPolicy; it can take up to 30 minutes to apply."
    )

    def __init__(self, message: str = DEFAULT_MESSAGE, **kwargs) -> None:
        super().__init__(message, **kwargs)


def graph_failure(status: int, headers: Mapping[str, str] | None, what: str, *, meeting_call: bool) -> UpstreamError:
    """The error for Graph answering ``status`` to the request that does ``what``
    (a phrase such as "making the Teams meeting")."""
    if status == 403 and meeting_call:
        return MeetingAccessDenied()
    if status == 429:
        return UpstreamUnavailable(f"Microsoft Graph is throttling the connector; {what} will be retried",
                                   retry_after=retry_after_seconds(headers))
    if status >= 500:
        return UpstreamUnavailable(f"Microsoft Graph is unavailable (HTTP {status}); {what} will be retried",
                                   retry_after=retry_after_seconds(headers))
    if status == 401:
        return UpstreamError(f"Microsoft Graph did not accept the connector's token when {what}")
    if status == 403:
        return UpstreamError(f"Microsoft Graph refused {what}: the connector's app lacks the "
                             "OnlineMeetings application permission in this tenant")
    if status == 404:
        return UpstreamError(f"Microsoft Graph did not find what {what} needs (HTTP 404)")
    return UpstreamError(f"Microsoft Graph refused {what} (HTTP {status})")
