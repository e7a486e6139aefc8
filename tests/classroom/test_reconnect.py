"""A kernel seat's classroom channel opens again when the server drops it (a close
frame, or the TCP stream cut without one) while its room goes on: the server lists
its channel again, and the classroom still reaches it (a broadcast) and hears it (a
raised hand). The drop is made inside the server by the test-only registry driver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_video.account import Credentials
from jupyter_video.classroom import Classroom, attend

from ..client.participants import LOOPBACK, token
from ..server_process import ServerProcess
from ..waiting import wait_until
from .conftest import room_name


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("classroom-reconnect"), driver=True,
                            video_config={"ice_host_addresses": LOOPBACK, "media_workers": 1})
    yield process.start()
    process.stop()


def channels(server: ServerProcess, room: str, drop: str | None = None) -> dict[str, Any]:
    """The classroom channels open to ``room`` in the server (and drop them)."""
    return server.drive("classroom_channels", room=room, **({"drop": drop} if drop else {}))


@pytest.mark.parametrize("drop", ["close", "abort"])
async def test_a_seat_opens_its_dropped_channel_again(server: ServerProcess, drop: str) -> None:
    raw = server.credentials()
    name = room_name()
    teacher = Classroom(name, server=server.url, credentials=Credentials(
        raw["account_sid"], raw["auth_token"], raw["api_key_sid"], raw["api_key_secret"],
        server.url))
    seat = await attend(token(server, "s1"), name, server.url, identity="s1",
                        ice_host_addresses=LOOPBACK)
    try:
        before = channels(server, name)
        assert before["identities"] == ["s1"]
        assert channels(server, name, drop)["ids"] == before["ids"]
        reopened = await wait_until(
            lambda: (now := channels(server, name))["identities"] == ["s1"]
            and now["ids"] != before["ids"], what="s1's channel open again in the server")
        assert reopened
        await wait_until(lambda: seat.reopened == 1, what="the seat's channel open again")
        assert seat.room.state == "connected"
        teacher.broadcast("back on page 12")
        await seat.channel.wait(lambda m: m["type"] == "broadcast"
                                and m["text"] == "back on page 12")
        await seat.raise_hand()
        assert [hand["identity"] for hand in teacher.hands] == ["s1"]
    finally:
        await seat.leave()
    # Leaving closes it for good: nothing opens it again.
    await asyncio.sleep(1.0)
    assert channels(server, name)["identities"] == []
