"""The composition root: real adapters built from Settings, lazily, once per process.

Triggers ask this module for what a use case needs; tests either pass fakes to the use
cases directly or point these real adapters at Azurite and the sandbox through settings.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

from connector.settings import Settings, get_settings


class Container:
    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def table_service(self):
        from connector.adapters.storage.clients import table_service

        return table_service(self.settings)

    @cached_property
    def queue_service(self):
        from connector.adapters.storage.clients import queue_service

        return queue_service(self.settings)

    @cached_property
    def tables(self):
        from connector.adapters.storage.repositories import StampTables

        return StampTables(self.table_service, self.settings)

    @cached_property
    def storage_probe(self):
        from connector.adapters.storage.probe import StorageProbe

        return StorageProbe(self.table_service, self.queue_service)

    @cached_property
    def tenants(self):
        from connector.adapters.storage.repositories import TableTenantRepository

        return TableTenantRepository(self.tables.tenants)

    @cached_property
    def endpoints(self):
        from connector.adapters.storage.repositories import TableEndpointRepository

        return TableEndpointRepository(self.tables.endpoints, self.tables.endpoint_urls)

    @cached_property
    def notifications(self):
        from connector.adapters.storage.repositories import TableNotificationRepository

        return TableNotificationRepository(self.tables.notifications)

    @cached_property
    def usage_events(self):
        from connector.adapters.storage.repositories import TableUsageEventLog

        return TableUsageEventLog(self.tables.usage_events)


@lru_cache(maxsize=1)
def container() -> Container:
    """The process's container (tests call ``container.cache_clear()`` with ``get_settings``)."""
    return Container(get_settings())
