"""Blueprints: the only modules that import ``azure.functions``.

Each trigger parses its input, calls one use case and maps the result or error.

The HTTP libraries under our adapters log every request's URL at INFO (httpx), and the Azure SDKs
their requests and headers: a FHIR search URL carries patient ids, a Graph URL the organizer's
account. The Functions host forwards INFO to Application Insights, so these loggers speak only
from WARNING up; our own loggers log ids and outcomes.
"""

import logging

for _chatty in ("httpx", "httpcore", "azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)
