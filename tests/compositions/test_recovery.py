"""After a restart no composition stays processing: one interrupted is enqueued again, one
interrupted too often fails with Twilio's 53626 (real store, the service itself)."""

from __future__ import annotations

from pathlib import Path

from jupyter_video import sids
from jupyter_video.compositions import ComposerPool
from jupyter_video.model import Composition, CompositionStatus, Room, RoomStatus
from jupyter_video.server.compositions import MAX_ATTEMPTS, Compositions
from jupyter_video.server.registry import RoomRegistry
from jupyter_video.store import SQLiteStore


def test_recover_retries_an_interrupted_composition_and_fails_one_tried_too_often(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "store.sqlite")
    account = sids.new_sid(sids.ACCOUNT)
    room = Room(sid=sids.new_sid(sids.ROOM), account_sid=account, unique_name="lecture",
                status=RoomStatus.COMPLETED)
    store.save(room)

    def composition(status: CompositionStatus, attempts: int) -> Composition:
        made = Composition(sid=sids.new_sid(sids.COMPOSITION), account_sid=account,
                           room_sid=room.sid, path=str(tmp_path / "x.mp4"), status=status,
                           attempts=attempts)
        store.save(made)
        return made

    once = composition(CompositionStatus.PROCESSING, 1)
    too_often = composition(CompositionStatus.PROCESSING, MAX_ATTEMPTS)
    waiting = composition(CompositionStatus.ENQUEUED, 0)
    done = composition(CompositionStatus.COMPLETED, 1)
    service = Compositions(RoomRegistry(store, account), tmp_path, ComposerPool(1))
    service.recover()

    def status(made: Composition) -> tuple[CompositionStatus, int | None]:
        found = store.get(Composition, made.sid)
        assert found is not None
        return found.status, found.error_code

    assert status(once) == (CompositionStatus.ENQUEUED, None)
    assert status(too_often) == (CompositionStatus.FAILED, 53626)
    assert status(waiting) == (CompositionStatus.ENQUEUED, None)
    assert status(done) == (CompositionStatus.COMPLETED, None)
    assert sorted(service._waiting) == sorted([once.sid, waiting.sid])  # composed at start
    store.close()
