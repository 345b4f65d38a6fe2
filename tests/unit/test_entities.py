"""Model <-> entity mapping: scalars stay queryable columns, structures become JSON, nothing is lost."""

from __future__ import annotations

from datetime import datetime, timezone

from azure.data.tables import EdmType, EntityProperty
from pydantic import BaseModel

from connector.adapters.storage.entities import from_entity, to_entity
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.tenant import Consent, Tenant

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_scalars_are_columns_and_structures_are_json():
    endpoint = FhirEndpoint(
        tenant_id=TID, endpoint_id="cardio", base_url="https://x.example/r4/t", environment=Environment.test,
        location_ids=["1", "2"], created_at=NOW,
    )
    entity = to_entity(endpoint, TID, "cardio")
    assert entity["PartitionKey"] == TID and entity["RowKey"] == "cardio"
    assert entity["environment"] == "test"  # enum value, queryable
    assert entity["created_at"] == NOW  # a real datetime column
    assert entity["location_ids"] == '["1","2"]'
    assert "linked_number" not in entity  # None is not stored
    assert from_entity(FhirEndpoint, entity) == endpoint


def test_nested_models_round_trip():
    tenant = Tenant(tenant_id=TID, region="us", created_at=NOW, sms_data_consent=Consent(by_oid=TID, at=NOW))
    entity = to_entity(tenant, TID, "tenant")
    assert isinstance(entity["sms_data_consent"], str)
    assert from_entity(Tenant, entity) == tenant


class Counter(BaseModel):
    name: str
    big: int
    small: int


def test_large_integers_are_int64_and_come_back_as_ints():
    entity = to_entity(Counter(name="n", big=2**40, small=7), "p", "r")
    assert isinstance(entity["big"], EntityProperty) and entity["big"].edm_type == EdmType.INT64
    assert entity["small"] == 7
    read_back = dict(entity, big=EntityProperty(str(2**40), EdmType.INT64))  # how the SDK returns it
    assert from_entity(Counter, read_back) == Counter(name="n", big=2**40, small=7)


def test_aware_datetimes_are_datetime_columns():
    from connector.domain.notification import NotificationClaim, NotificationKind

    claim = NotificationClaim(tenant_id=TID, endpoint_id="e", appointment_id="1", kind=NotificationKind.reminder,
                              appointment_start=NOW, claimed_at=NOW)
    entity = to_entity(claim, "p", "r")
    assert entity["appointment_start"] == NOW and entity["kind"] == "reminder"
    assert from_entity(NotificationClaim, entity) == claim
