"""A store in a dict: for tests and for servers that need no history."""

from __future__ import annotations

import copy
from typing import Any

from ..model.record import Record, parse_time
from .base import Query, Store, T


class MemoryStore(Store):
    def __init__(self) -> None:
        self._records: dict[str, dict[str, dict[str, Any]]] = {}

    def save(self, record: Record) -> None:
        self._records.setdefault(record.kind, {})[record.sid] = record.to_record()

    def get(self, cls: type[T], sid: str) -> T | None:
        data = self._records.get(cls.kind, {}).get(sid)
        return cls.from_record(copy.deepcopy(data)) if data is not None else None

    def _matching(self, cls: type[T], query: Query) -> list[dict[str, Any]]:
        rows = [
            data
            for data in self._records.get(cls.kind, {}).values()
            if all(data.get(name) == value for name, value in query.equal.items())
            and _created_within(data, query)
        ]
        rows.sort(key=lambda data: (data.get("date_created") or "", data["sid"]), reverse=True)
        return rows

    def list(self, cls: type[T], query: Query | None = None) -> list[T]:
        query = query or Query()
        rows = self._matching(cls, query)
        end = None if query.limit is None else query.offset + query.limit
        return [cls.from_record(copy.deepcopy(data)) for data in rows[query.offset : end]]

    def count(self, cls: type[T], query: Query | None = None) -> int:
        return len(self._matching(cls, query or Query()))

    def delete(self, cls: type[T], sid: str) -> bool:
        return self._records.get(cls.kind, {}).pop(sid, None) is not None


def _created_within(data: dict[str, Any], query: Query) -> bool:
    created = parse_time(data.get("date_created"))
    if created is None:
        return query.created_after is None and query.created_before is None
    if query.created_after is not None and created < query.created_after:
        return False
    return query.created_before is None or created <= query.created_before
