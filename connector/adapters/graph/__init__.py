"""Microsoft Graph: Teams online meetings and their call-event notifications.

- :mod:`.meetings`: ``GraphMeetings`` (the ``Meetings`` port over msgraph-sdk) and
  ``graph_meetings_from_settings``;
- :mod:`.notifications`: ``parse_call_events`` and ``validation_token`` for the webhook (pure);
- :mod:`.credentials`: app-only Graph tokens (client secret per tenant, or managed identity);
- :mod:`.errors`: ``MeetingAccessDenied`` and how Graph's statuses map to the connector's errors.

Nothing is imported here: msgraph and httpx load only when an adapter is built (cold start).
"""
