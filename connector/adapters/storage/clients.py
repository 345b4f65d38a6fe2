"""Service clients for the stamp's storage account.

Managed identity (``DefaultAzureCredential``) everywhere in Azure; Azurite's account key only
on loopback (``Settings`` refuses it elsewhere).
"""

from __future__ import annotations

from azure.core.credentials import AzureNamedKeyCredential
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from connector.settings import Settings


def _credential(settings: Settings):
    if settings.storage_emulator_key is not None:
        return AzureNamedKeyCredential(
            settings.storage_account_name, settings.storage_emulator_key.get_secret_value()
        )
    from azure.identity import DefaultAzureCredential  # heavy: only where it is used

    return DefaultAzureCredential()


def _client_options(settings: Settings) -> dict:
    # A trigger has minutes, not hours: fail within a few bounded retries and let the
    # host's own retry (queue dequeue count, timer's next run) take over.
    return {
        "connection_timeout": settings.storage_timeout_seconds,
        "read_timeout": settings.storage_timeout_seconds,
        "retry_total": 3,
    }


def table_service(settings: Settings) -> TableServiceClient:
    return TableServiceClient(settings.table_endpoint, credential=_credential(settings), **_client_options(settings))


def queue_service(settings: Settings) -> QueueServiceClient:
    return QueueServiceClient(settings.queue_endpoint, credential=_credential(settings), **_client_options(settings))
