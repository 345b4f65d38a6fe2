"""Pydantic model <-> Table Storage entity.

Table Storage holds flat rows of scalars (string, int, float, bool, datetime). Scalars are
stored as themselves, so they stay queryable; anything structured (lists, nested models)
is stored as a JSON string and parsed back by the model. ``None`` is not stored at all.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import Any

from azure.data.tables import EdmType, EntityProperty
from pydantic import AwareDatetime, BaseModel

# pydantic's AwareDatetime is a marker class, not a datetime subclass: a datetime column all the same.
_SCALARS = (str, int, float, bool, datetime, AwareDatetime)
_INT32 = range(-(2**31), 2**31)
_SYSTEM = {"PartitionKey", "RowKey", "Timestamp", "etag"}


def _is_scalar(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_scalar(args[0])
    if origin is typing.Literal:
        return True
    return isinstance(annotation, type) and issubclass(annotation, (*_SCALARS, Enum))


@lru_cache(maxsize=None)
def _json_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name for name, field in model.model_fields.items() if not _is_scalar(field.annotation)
    )


def to_entity(item: BaseModel, partition_key: str, row_key: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_key, "RowKey": row_key}
    json_fields = _json_fields(type(item))
    for name, value in item.model_dump(mode="python").items():
        if value is None:
            continue
        if name in json_fields:
            entity[name] = json.dumps(getattr(item, name), default=_json_default, separators=(",", ":"))
        elif isinstance(value, Enum):
            entity[name] = value.value
        elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT32:
            entity[name] = EntityProperty(value, EdmType.INT64)
        else:
            entity[name] = value
    return entity


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def from_entity(model: type[BaseModel], entity: typing.Mapping[str, Any]) -> BaseModel:
    json_fields = _json_fields(model)
    data: dict[str, Any] = {}
    for name, value in entity.items():
        if name in _SYSTEM or name not in model.model_fields:
            continue
        if isinstance(value, EntityProperty):
            value = int(value.value) if value.edm_type == EdmType.INT64 else value.value
        data[name] = json.loads(value) if name in json_fields and isinstance(value, str) else value
    return model.model_validate(data)
