"""Resolve a trigger's ``connection`` the way the host does and open queue clients."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueServiceClient

DEFAULT_CONNECTION = "AzureWebJobsStorage"


def queue_service_client(
    connection: str | None, environ: Mapping[str, str], used_by: str = ""
) -> QueueServiceClient:
    """A client for the storage account named by the setting ``connection``.

    Looked up as the host does: ``<connection>`` or ``AzureWebJobs<connection>`` holding a
    connection string; else identity-based ``<connection>__queueServiceUri`` (or
    ``__accountName``) with DefaultAzureCredential (``__clientId`` picks a user-assigned
    identity). Messages are read raw (no decode policy): the listener decodes base64 itself so
    it can still forward the original text of an undecodable message to the poison queue.
    """
    name = connection or DEFAULT_CONNECTION
    for key in (name, f"AzureWebJobs{name}"):
        if environ.get(key):
            return QueueServiceClient.from_connection_string(environ[key])
    service_uri = environ.get(f"{name}__queueServiceUri")
    if not service_uri and environ.get(f"{name}__accountName"):
        service_uri = f"https://{environ[f'{name}__accountName']}.queue.core.windows.net"
    if service_uri:
        return QueueServiceClient(service_uri, credential=_identity(environ.get(f"{name}__clientId")))
    where = f" (used by {used_by})" if used_by else ""
    raise ValueError(
        f"storage connection {name!r}{where} is not configured: set {name} to a connection string "
        f"or {name}__queueServiceUri for an identity-based connection"
    )


def _identity(client_id: str | None) -> Any:
    from azure.identity import DefaultAzureCredential  # only identity-based setups pay for it

    return DefaultAzureCredential(managed_identity_client_id=client_id)


def ensure_queue(client: QueueClient) -> QueueClient:
    """Create the queue when missing (as the host does for a trigger and its poison queue)."""
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client
