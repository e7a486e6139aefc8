"""The classroom state survives a restart of the Jupyter server: the lock (and who it
still lets back in), the join guard, raised hands in their order and the breakouts'
assignment are kept in the store beside the chat and are in force again when the room
is used after the restart."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_video.account import Credentials
from jupyter_video.classroom import Classroom, Seat, attend
from jupyter_video.client import connect
from jupyter_video.errors import VideoError

from ..client.participants import LOOPBACK, token
from ..server_process import ServerProcess
from .conftest import room_name


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path, video_config={
        "ice_host_addresses": LOOPBACK, "media_workers": 1, "moderators": ["teacher"]})
    yield process.start()
    process.stop()


def teacher(server: ServerProcess, room: str) -> Classroom:
    raw = server.credentials()
    return Classroom(room, server=server.url, credentials=Credentials(
        raw["account_sid"], raw["auth_token"], raw["api_key_sid"], raw["api_key_secret"],
        server.url))


async def test_lock_guards_hands_and_breakouts_survive_a_restart(server: ServerProcess) -> None:
    name = room_name()
    seats: list[Seat] = []
    for identity in ("ada", "grace"):
        seats.append(await attend(token(server, identity), name, server.url, identity=identity,
                                  ice_host_addresses=LOOPBACK))
    await seats[1].raise_hand()
    await seats[0].raise_hand()
    c = teacher(server, name)
    c.settings(mute_on_join=True, self_unmute=False)
    c.lock()
    c.spotlight("grace")
    opened = c.breakout(rooms=2, assignment={"ada": f"{name}-breakout-1",
                                            "grace": f"{name}-breakout-2"}, duration=3600)
    for seat, target in zip(seats, ("breakout-1", "breakout-2"), strict=True):
        await seat.wait_in(f"{name}-{target}")
    before = c.state
    for seat in seats:
        with contextlib.suppress(Exception):
            await seat.leave()

    server.stop()
    server.start()
    c = teacher(server, name)
    after = c.state
    for key in ("locked", "mute_on_join", "self_unmute", "spotlight", "revision"):
        assert after[key] == before[key], key
    assert (after["locked"], after["mute_on_join"], after["spotlight"]) == (True, True, "grace")
    assert [hand["identity"] for hand in after["hands"]] == ["grace", "ada"]
    assert [h["raised_at"] for h in after["hands"]] == [h["raised_at"] for h in before["hands"]]
    assert after["breakouts"]["assignment"] == opened["assignment"]
    assert after["breakouts"]["ends_at"] == pytest.approx(opened["ends_at"])
    # The breakouts still belong to the main room: they are its records, and their state
    # is the main room's.
    assert [r["name"] for r in c.records()["rooms"]] == [
        name, f"{name}-breakout-1", f"{name}-breakout-2"]
    assert teacher(server, f"{name}-breakout-1").state["main_room"] == name

    # The lock is in force: a newcomer is refused, a member it let in comes back.
    with pytest.raises(VideoError) as refused:
        await connect(token(server, "mallory"), name, server.url, ice_host_addresses=LOOPBACK)
    assert refused.value.code == 53105 and "locked by its moderator" in refused.value.message
    # Back in the main room, ada gets the move to her breakout she was assigned.
    ada = await attend(token(server, "ada"), name, server.url, identity="ada",
                       ice_host_addresses=LOOPBACK)
    try:
        await ada.wait_in(f"{name}-breakout-1")
        assert [n["reason"] for n in ada.notices if n["type"] == "move"] == ["breakout"]
        c.recall()
        await ada.wait_in(name)
        assert c.state["breakouts"] is None
    finally:
        await ada.leave()
