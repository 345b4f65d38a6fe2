"""The composition root: real adapters built from Settings, lazily, once per process, and the
use cases bound to them.

A trigger asks for one use case (``container().admin_setup``) and calls it with the request's
inputs; it never assembles repositories itself, and no service calls back in here. Tests
either build use cases from fakes directly or point these real adapters at Azurite and the
sandbox through settings.

Heavy SDKs (msgraph, ACS phone numbers, azure-identity) are imported inside the properties
that need them, so importing the app stays cheap (cold start is a product feature).
"""

from __future__ import annotations

from functools import cached_property, lru_cache

from connector.settings import Settings, get_settings


class _Lazy:
    """An adapter built on first use: a use case that may never call it (the join page never
    texts, the webhook never makes a meeting) does not pay for importing its SDK."""

    def __init__(self, build):
        self._build = build
        self._target = None

    def __getattr__(self, name):
        if self._target is None:
            self._target = self._build()
        return getattr(self._target, name)


class Container:
    def __init__(self, settings: Settings):
        self.settings = settings

    # -- storage ---------------------------------------------------------------------------

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
    def opt_outs(self):
        from connector.adapters.storage.repositories import TableOptOutRepository

        return TableOptOutRepository(self.tables.opt_outs)

    @cached_property
    def scan_queue(self):
        from connector.adapters.storage.queues import StorageQueue

        return StorageQueue.from_service(self.queue_service, self.settings.scan_queue)

    @cached_property
    def send_queue(self):
        from connector.adapters.storage.queues import StorageQueue

        return StorageQueue.from_service(self.queue_service, self.settings.send_queue)

    @cached_property
    def provisioning_queue(self):
        from connector.adapters.storage.queues import StorageQueue

        return StorageQueue.from_service(self.queue_service, self.settings.provisioning_queue)

    @cached_property
    def launch_states(self):
        from connector.adapters.storage.repositories import TableLaunchStateRepository

        return TableLaunchStateRepository(self.tables.launch_states)

    @cached_property
    def visit_rows(self):
        from connector.adapters.storage.repositories import TableVisitRepository

        return TableVisitRepository(self.tables.visits)

    @cached_property
    def join_links(self):
        from connector.adapters.storage.repositories import TableJoinLinkRepository

        return TableJoinLinkRepository(self.tables.join_links)

    @cached_property
    def meeting_subscriptions(self):
        from connector.adapters.storage.repositories import TableSubscriptionRepository

        return TableSubscriptionRepository(self.tables.subscriptions)

    # -- outside services --------------------------------------------------------------------

    @cached_property
    def acs_phone_numbers(self):
        from connector.adapters.acs.phone_numbers import phone_numbers_from_settings

        return phone_numbers_from_settings(self.settings)

    @cached_property
    def admin_token_validator(self):
        from connector.adapters.identity.entra_tokens import token_validator_from_settings

        return token_validator_from_settings(self.settings)

    @cached_property
    def safe_http(self):
        from connector.adapters.net.safe_http import SafeHttpClient

        # Local mode may reach the sandbox on loopback; nothing else private, ever.
        return SafeHttpClient(allow_loopback_http=self.settings.local_mode)

    @cached_property
    def smart_discovery(self):
        from connector.adapters.fhir.smart_discovery import CachedSmartDiscovery, SmartDiscoveryClient

        return CachedSmartDiscovery(SmartDiscoveryClient(self.safe_http))

    @cached_property
    def fhir(self):
        from connector.adapters.fhir.rest import FhirRestClient

        return FhirRestClient(self.safe_http, allow_loopback=self.settings.local_mode)

    @cached_property
    def client_assertions(self):
        """The stamp's key ring for private_key_jwt (None without a key): signs with the current
        key, publishes the previous and next ones during a rotation."""
        from connector.adapters.identity.client_assertions import key_ring_from_settings

        return key_ring_from_settings(self.settings)

    @cached_property
    def smart_tokens(self):
        import os

        from connector.adapters.fhir.smart_client import ClientSecrets, SmartTokenHttpClient

        return SmartTokenHttpClient(self.safe_http, secrets=ClientSecrets(os.environ),
                                    signer=lambda: self.client_assertions, allow_loopback=self.settings.local_mode)

    @cached_property
    def id_tokens(self):
        from connector.adapters.fhir.smart_client import IdTokenJwksVerifier

        return IdTokenJwksVerifier(self.safe_http, allow_loopback=self.settings.local_mode)

    @cached_property
    def notification_certificate(self):
        """The certificate Graph encrypts call events with (subscriptions name it), if configured."""
        from connector.adapters.graph.encryption import notification_certificate_from_settings

        return notification_certificate_from_settings(self.settings)

    @cached_property
    def notification_decryption_keys(self):
        """Its private key by certificate id, for the webhook (parsed only there)."""
        from connector.adapters.graph.encryption import decryption_keys_from_settings

        return decryption_keys_from_settings(self.settings)

    @cached_property
    def meetings(self):
        from connector.adapters.graph.meetings import graph_meetings_from_settings

        return graph_meetings_from_settings(self.settings, notification_certificate=self.notification_certificate)

    @cached_property
    def sms_sender(self):
        from connector.adapters.acs.sms import sms_sender_from_settings

        return sms_sender_from_settings(self.settings)

    @cached_property
    def backend_tokens(self):
        from connector.adapters.fhir.backend_token import BackendServicesTokens

        return BackendServicesTokens(self.safe_http, lambda: self.client_assertions,
                                     allow_loopback=self.settings.local_mode,
                                     jwks_url=f"{self.settings.public_base_url}/api/.well-known/jwks.json")

    @cached_property
    def scan_fhir(self):
        """FHIR for scans and sends: 429 and 5xx are retried (a launch's reads are not: a clinician waits)."""
        from connector.adapters.fhir.retry import RetryingFhir

        return RetryingFhir(self.fhir)

    @cached_property
    def opt_out_key(self) -> bytes | None:
        import base64

        return base64.b64decode(self.settings.optout_key.get_secret_value()) if self.settings.optout_key else None

    @cached_property
    def session_sealer(self):
        from connector.adapters.identity.sessions import SessionSealer

        return SessionSealer.from_setting(self.settings.session_key)

    @cached_property
    def clock(self):
        from connector.services.ports import SystemClock

        return SystemClock()

    @cached_property
    def ids(self):
        from connector.services.ports import SecretsIdSource

        return SecretsIdSource()

    # -- use cases ---------------------------------------------------------------------------

    def validate_fhir_url(self, base_url: str, environment):
        from connector.services.fhir_validation import validate_fhir_base_url

        return validate_fhir_base_url(
            base_url, environment=environment, http=self.safe_http, discovery=self.smart_discovery,
            local_mode=self.settings.local_mode,
        )

    @cached_property
    def admin_setup(self):
        from connector.services.admin_setup import AdminSetup

        return AdminSetup(self.tenants, self.endpoints, self.validate_fhir_url,
                          region=self.settings.stamp_region, public_base_url=self.settings.public_base_url)

    @cached_property
    def sms_numbers(self):
        from connector.services.sms_numbers import SmsNumbers

        return SmsNumbers(self.tenants, self.phone_numbers, self.endpoints, self.provisioning_queue)

    @cached_property
    def number_provisioning(self):
        from connector.services.sms_numbers import NumberProvisioningWorker

        return NumberProvisioningWorker(self.phone_numbers, self.acs_phone_numbers)

    @cached_property
    def smart_launch(self):
        from connector.services.smart_launch import SmartLaunch

        return SmartLaunch(self.endpoints, self.launch_states, self.smart_discovery, self.smart_tokens, self.id_tokens,
                           self.clock, self.ids, redirect_uri=f"{self.settings.public_base_url}/api/launch/callback",
                           allow_loopback=self.settings.local_mode)

    @cached_property
    def visits(self):
        from connector.services.visits import Visits

        return Visits(self.visit_rows, self.meeting_subscriptions, _Lazy(lambda: self.meetings), self.usage_events,
                      self.clock, self.ids, notification_url=self.settings.graph_notification_url)

    @cached_property
    def patient_links(self):
        from connector.services.patient_links import PatientLinks

        return PatientLinks(self.join_links, self.visit_rows, self.endpoints, self.tenants,
                            _Lazy(lambda: self.sms_sender),
                            self.clock, self.ids, public_base_url=self.settings.public_base_url)

    @cached_property
    def provider_visit(self):
        from connector.services.provider_visit import ProviderVisit

        return ProviderVisit(self.endpoints, self.fhir, self.visits, self.patient_links, self.clock, self.ids)

    @cached_property
    def reminder_scan(self):
        from connector.services.reminder_scan import ReminderScan

        return ReminderScan(self.tenants, self.endpoints, self.notifications, self.scan_fhir, self.backend_tokens,
                            self.scan_queue, self.send_queue, self.clock)

    @cached_property
    def reminder_sender(self):
        from connector.services.reminder_send import ReminderSender

        return ReminderSender(self.notifications, self.endpoints, self.tenants, self.scan_fhir, self.backend_tokens,
                              self.visits, self.patient_links, _Lazy(lambda: self.sms_sender), self.opt_outs,
                              self.send_queue, self.usage_events, self.clock, opt_out_key=self.opt_out_key)

    @cached_property
    def sms_events(self):
        from connector.services.sms_events import SmsEvents

        return SmsEvents(self.notifications, self.opt_outs, self.phone_numbers, self.usage_events,
                         opt_out_key=self.opt_out_key)

    @cached_property
    def reminder_admin(self):
        from connector.services.reminder_admin import ReminderAdmin

        return ReminderAdmin(self.endpoints, self.notifications, self.reminder_sender, self.clock,
                             public_base_url=self.settings.public_base_url)

    @cached_property
    def retention(self):
        from connector.adapters.storage.repositories import expiring_rows
        from connector.services.retention import Retention

        return Retention(**expiring_rows(self.tables), clock=self.clock, days=self.settings.retention_days)

    @cached_property
    def patient_visit(self):
        from connector.services.patient_visit import PatientVisit

        return PatientVisit(self.fhir, self.visits, self.patient_links, self.clock)


@lru_cache(maxsize=1)
def container() -> Container:
    """The process's container (tests call ``container.cache_clear()`` with ``get_settings``)."""
    return Container(get_settings())
