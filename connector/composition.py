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


    @cached_property
    def phone_numbers(self):
        from connector.adapters.storage.repositories import TablePhoneNumberRepository

        return TablePhoneNumberRepository(self.tables.phone_numbers, self.tables.number_operations)

    @cached_property
    def acs_phone_numbers(self):
        from connector.adapters.acs.phone_numbers import phone_numbers_from_settings

        return phone_numbers_from_settings(self.settings)

    @cached_property
    def provisioning_queue(self):
        from connector.adapters.storage.queues import StorageQueue

        return StorageQueue.from_service(self.queue_service, self.settings.provisioning_queue)

    @cached_property
    def admin_token_validator(self):
        from connector.adapters.identity.entra_tokens import token_validator_from_settings

        return token_validator_from_settings(self.settings)

    @cached_property
    def safe_http(self):
        from connector.adapters.net.safe_http import SafeHttpClient

        # Local mode may reach the sandbox on loopback; nothing else private, ever.
        return SafeHttpClient(allow_loopback_http=self.settings.local_mode)

    def validate_fhir_url(self, base_url: str, environment):
        from connector.services.fhir_validation import validate_fhir_base_url

        return validate_fhir_base_url(
            base_url, environment=environment, http=self.safe_http, local_mode=self.settings.local_mode
        )


@lru_cache(maxsize=1)
def container() -> Container:
    """The process's container (tests call ``container.cache_clear()`` with ``get_settings``)."""
    return Container(get_settings())
