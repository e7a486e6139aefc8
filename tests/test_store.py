"""Both stores keep and query records the same way; SQLite keeps them across reopen."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from jupyter_video import sids
from jupyter_video.model import Participant, Room, RoomStatus
from jupyter_video.store import MemoryStore, Query, SQLiteStore, Store, open_store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.sqlite")
    yield made
    made.close()


def make_rooms(store: Store, count: int) -> list[Room]:
    rooms = []
    for index in range(count):
        r = Room(
            sid=sids.new_sid("RM"),
            account_sid="AC",
            unique_name=f"room-{index}",
            date_created=T0 + timedelta(minutes=index),
        )
        store.save(r)
        rooms.append(r)
    return rooms


def test_saved_record_comes_back_equal(store: Store) -> None:
    (r,) = make_rooms(store, 1)
    assert store.get(Room, r.sid) == r
    assert store.get(Room, "RM" + "0" * 32) is None
    assert store.get(Participant, r.sid) is None  # kinds are separate


def test_list_is_newest_first_with_filters_and_slices(store: Store) -> None:
    rooms = make_rooms(store, 5)
    rooms[1].transition(RoomStatus.COMPLETED, T0 + timedelta(hours=1))
    store.save(rooms[1])
    assert [r.sid for r in store.list(Room)] == [r.sid for r in reversed(rooms)]
    completed = Query({"status": "completed"})
    assert [r.sid for r in store.list(Room, completed)] == [rooms[1].sid]
    assert store.count(Room, completed) == 1
    window = Query(
        created_after=T0 + timedelta(minutes=1), created_before=T0 + timedelta(minutes=3)
    )
    assert [r.sid for r in store.list(Room, window)] == [rooms[3].sid, rooms[2].sid, rooms[1].sid]
    page = Query(offset=1, limit=2)
    assert [r.sid for r in store.list(Room, page)] == [rooms[3].sid, rooms[2].sid]
    assert store.count(Room, page) == 5
    assert store.find(Room, unique_name="room-4") == rooms[4]


def test_delete_removes_one_record(store: Store) -> None:
    rooms = make_rooms(store, 2)
    assert store.delete(Room, rooms[0].sid) is True
    assert store.delete(Room, rooms[0].sid) is False
    assert [r.sid for r in store.list(Room)] == [rooms[1].sid]


def test_sqlite_records_survive_reopening(tmp_path: Path) -> None:
    first = open_store(f"sqlite:///{tmp_path}/kept.sqlite")
    rooms = make_rooms(first, 3)
    rooms[0].transition(RoomStatus.COMPLETED, T0 + timedelta(seconds=77))
    first.save(rooms[0])
    first.close()
    second = open_store(f"sqlite:///{tmp_path}/kept.sqlite")
    again = second.get(Room, rooms[0].sid)
    assert again == rooms[0]
    assert again is not None and again.duration == 77
    assert second.count(Room) == 3
    second.close()


def test_unknown_store_url_is_refused_with_the_forms_it_takes() -> None:
    with pytest.raises(ValueError, match="memory://"):
        open_store("postgres://nowhere")
