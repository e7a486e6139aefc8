"""A store in one SQLite file: every record survives a restart or a crash."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timezone
from pathlib import Path
from typing import Any

from ..model.record import Record, parse_time
from .base import Query, Store, T

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    sid TEXT NOT NULL,
    date_created TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, sid)
);
CREATE INDEX IF NOT EXISTS records_created ON records (kind, date_created, sid);
CREATE INDEX IF NOT EXISTS records_room ON records (kind, json_extract(data, '$.room_sid'));
CREATE INDEX IF NOT EXISTS records_participant
    ON records (kind, json_extract(data, '$.participant_sid'));
CREATE INDEX IF NOT EXISTS records_room_name
    ON records (kind, json_extract(data, '$.room_name'));
CREATE INDEX IF NOT EXISTS records_unique_name
    ON records (kind, json_extract(data, '$.unique_name'));
"""
INDEXED_FIELDS = frozenset({"room_sid", "participant_sid", "room_name", "unique_name"})
"""Fields with an index of their own above: a query naming one of them looks it up
there rather than walking every record of its kind in date order."""
_FIELD = re.compile(r"^[a-z_]+$")


class SQLiteStore(Store):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection used from the server's event loop thread.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        # WAL keeps readers off writers' backs; FULL sync makes each committed
        # record survive a crash of the server or the machine.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def save(self, record: Record) -> None:
        data = record.to_record()
        self._db.execute(
            "INSERT OR REPLACE INTO records (kind, sid, date_created, data) VALUES (?, ?, ?, ?)",
            (record.kind, record.sid, _utc_text(data.get("date_created")), json.dumps(data)),
        )

    def get(self, cls: type[T], sid: str) -> T | None:
        row = self._db.execute(
            "SELECT data FROM records WHERE kind = ? AND sid = ?", (cls.kind, sid)
        ).fetchone()
        return cls.from_record(json.loads(row[0])) if row else None

    def _where(self, cls: type[T], query: Query) -> tuple[str, list[Any]]:
        clauses = ["kind = ?"]
        params: list[Any] = [cls.kind]
        for name, value in query.equal.items():
            if not _FIELD.match(name):
                raise ValueError(f"not a field name: {name!r}")
            clauses.append(f"json_extract(data, '$.{name}') IS ?")
            params.append(int(value) if isinstance(value, bool) else value)
        if query.created_after is not None:
            clauses.append("date_created >= ?")
            params.append(_utc_text(query.created_after.isoformat()))
        if query.created_before is not None:
            clauses.append("date_created <= ?")
            params.append(_utc_text(query.created_before.isoformat()))
        return " AND ".join(clauses), params

    def list(self, cls: type[T], query: Query | None = None) -> list[T]:
        query = query or Query()
        where, params = self._where(cls, query)
        # Without statistics SQLite walks records_created for the ORDER BY and tests
        # every record of the kind (a room's unique name looked up among all rooms
        # ever made); '+' keeps that index out when a field with its own index is
        # asked for, and the few records it finds are sorted instead.
        order = "+date_created DESC, +sid DESC" if INDEXED_FIELDS & set(query.equal) else (
            "date_created DESC, sid DESC")
        sql = f"SELECT data FROM records WHERE {where} ORDER BY {order}"
        if query.limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [query.limit, query.offset]
        elif query.offset:
            sql += " LIMIT -1 OFFSET ?"
            params.append(query.offset)
        return [cls.from_record(json.loads(row[0])) for row in self._db.execute(sql, params)]

    def count(self, cls: type[T], query: Query | None = None) -> int:
        where, params = self._where(cls, query or Query())
        row = self._db.execute(f"SELECT COUNT(*) FROM records WHERE {where}", params).fetchone()
        return int(row[0])

    def delete(self, cls: type[T], sid: str) -> bool:
        cursor = self._db.execute("DELETE FROM records WHERE kind = ? AND sid = ?", (cls.kind, sid))
        return cursor.rowcount > 0

    def close(self) -> None:
        self._db.close()


def _utc_text(value: str | None) -> str | None:
    """ISO text normalised to UTC, so that text order is time order."""
    if value is None:
        return None
    parsed = parse_time(value)
    assert parsed is not None
    return parsed.astimezone(timezone.utc).isoformat()
