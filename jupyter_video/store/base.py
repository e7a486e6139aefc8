"""The store interface: model records by kind and SID, with simple queries."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ..model.record import Record

T = TypeVar("T", bound=Record)


@dataclass(frozen=True)
class Query:
    """Which records of one kind to list, newest first, and which slice."""

    equal: dict[str, Any] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None
    offset: int = 0
    limit: int | None = None


class Store(abc.ABC):
    """Where Rooms, Participants, tracks and rules live across restarts."""

    @abc.abstractmethod
    def save(self, record: Record) -> None:
        """Insert or replace ``record``."""

    @abc.abstractmethod
    def get(self, cls: type[T], sid: str) -> T | None:
        """The record of ``cls`` with ``sid``, or None."""

    @abc.abstractmethod
    def list(self, cls: type[T], query: Query | None = None) -> list[T]:
        """Records of ``cls`` matching ``query``, newest first (by date_created, then SID)."""

    @abc.abstractmethod
    def count(self, cls: type[T], query: Query | None = None) -> int:
        """How many records of ``cls`` match ``query`` (ignoring its slice)."""

    @abc.abstractmethod
    def delete(self, cls: type[T], sid: str) -> bool:
        """Remove a record; whether it existed."""

    def close(self) -> None:  # noqa: B027 - optional for stores with nothing to release
        """Release connections and files."""

    def find(self, cls: type[T], **equal: Any) -> T | None:
        """The newest record of ``cls`` whose fields equal ``equal``."""
        found = self.list(cls, Query(equal=equal, limit=1))
        return found[0] if found else None
