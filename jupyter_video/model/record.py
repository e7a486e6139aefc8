"""Records: model objects as plain JSON-able dicts, for the store."""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Callable
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
        for name, convert in _converters(cls):
            if name not in data:
                continue
            value = data[name]
            kwargs[name] = convert(value) if convert is not None and value is not None else value
        return cls(**kwargs)


Converters = tuple[tuple[str, Callable[[Any], Any] | None], ...]
_CONVERTERS: dict[type, Converters] = {}


def _converters(cls: type[Record]) -> Converters:
    """Each field of ``cls`` and what turns its JSON value back into the field's type
    (None: as it is). Resolving the type hints cost more than a REST request's SQL
    (a quarter of the server's CPU under benchmarks/rest_load.py), and they never
    change, so once per class."""
    known = _CONVERTERS.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, Callable[[Any], Any] | None]] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = hints[field.name]
        convert: Callable[[Any], Any] | None = None
        if _is(hint, datetime):
            convert = parse_time
        elif (enum_type := _enum_in(hint)) is not None:
            convert = enum_type
        out.append((field.name, convert))
    _CONVERTERS[cls] = tuple(out)
    return _CONVERTERS[cls]


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
