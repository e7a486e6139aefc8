"""Records: model objects as plain JSON-able dicts, for the store."""

from __future__ import annotations

import dataclasses
import enum
import typing
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Record")


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 string back to an aware datetime."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class Record:
    """A dataclass that the store keeps: ``kind`` names its table, ``sid`` its key."""

    kind: ClassVar[str]
    sid: str

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            out[field.name] = value
        return out

    @classmethod
    def from_record(cls: type[T], data: dict[str, Any]) -> T:
        kwargs: dict[str, Any] = {}
        for name, is_time, enum_type in _conversions(cls):
            if name not in data:
                continue
            value = data[name]
            if value is not None and is_time:
                value = parse_time(value)
            elif value is not None and enum_type is not None:
                value = enum_type(value)
            kwargs[name] = value
        return cls(**kwargs)


Conversions = tuple[tuple[str, bool, "type[enum.Enum] | None"], ...]
_conversions_of: dict[type, Conversions] = {}


def _conversions(cls: type) -> Conversions:
    """Each field of ``cls``: its name, whether it is a datetime, its enum type if any.
    Worked out once per class: ``typing.get_type_hints`` evaluates every annotation
    string again on each call, and every record the store reads comes through here
    (it was most of the server's CPU while 50 participants joined)."""
    conversions = _conversions_of.get(cls)
    if conversions is None:
        hints = typing.get_type_hints(cls)
        conversions = tuple(
            (field.name, _is(hints[field.name], datetime), _enum_in(hints[field.name]))
            for field in dataclasses.fields(cls)
        )
        _conversions_of[cls] = conversions
    return conversions


def _members(hint: Any) -> tuple[Any, ...]:
    args = typing.get_args(hint)
    return args if args else (hint,)


def _is(hint: Any, cls: type) -> bool:
    return any(member is cls for member in _members(hint))


def _enum_in(hint: Any) -> type[enum.Enum] | None:
    for member in _members(hint):
        if isinstance(member, type) and issubclass(member, enum.Enum):
            return member
    return None
