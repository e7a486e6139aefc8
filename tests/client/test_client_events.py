"""Room events: sync and async listeners, and the ``async for`` stream."""

from __future__ import annotations

import asyncio

import pytest

from jupyter_video.client.events import EventEmitter, RoomEvent
from jupyter_video.client.peer_connection import IceBox
from jupyter_video.signaling import rsp


async def test_sync_and_async_listeners_and_streams_all_get_the_event() -> None:
    emitter = EventEmitter()
    seen: list[str] = []
    emitter.on("track_message", lambda event: seen.append(f"sync {event.message}"))

    async def later(event: RoomEvent) -> None:
        await asyncio.sleep(0.01)
        seen.append(f"async {event.message}")

    emitter.on("track_message", later)
    stream = emitter.events()
    emitter.emit("track_message", message="hi")
    emitter.emit("disconnected")
    await emitter.aclose()
    assert seen == ["sync hi", "async hi"]
    assert [event.name async for event in stream] == ["track_message", "disconnected"]


async def test_aclose_cancels_listeners_that_do_not_finish() -> None:
    emitter = EventEmitter()
    started = asyncio.Event()

    async def forever(event: RoomEvent) -> None:
        started.set()
        await asyncio.sleep(3600)

    emitter.on("reconnecting", forever)
    emitter.emit("reconnecting")
    await started.wait()
    await emitter.aclose(timeout=0.05)
    assert not emitter._tasks


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    emitter = EventEmitter()
    seen: list[str] = []
    emitter.on("reconnected", lambda event: 1 / 0)
    emitter.on("reconnected", lambda event: seen.append(event.name))
    emitter.emit("reconnected")
    assert seen == ["reconnected"]
    emitter.off("reconnected", seen.append)  # unknown listener: no error


def test_unknown_event_names_are_refused() -> None:
    with pytest.raises(ValueError, match="trackSubscribed"):
        EventEmitter().on("trackSubscribed", print)


def candidate(n: int) -> rsp.IceCandidate:
    return rsp.IceCandidate(f"candidate:{n} 1 udp 1 127.0.0.1 {5000 + n} typ host", "0", 0)


def test_ice_box_applies_each_cumulative_candidate_once_for_the_current_ufrag() -> None:
    box = IceBox()
    assert box.update(rsp.IceState("u1", 1, [candidate(1)])) == []  # no remote ufrag yet
    assert box.set_ufrag("u1") == [candidate(1)]
    assert box.update(rsp.IceState("u1", 2, [candidate(1), candidate(2)])) == [candidate(2)]
    assert box.update(rsp.IceState("u1", 2, [candidate(1), candidate(2)])) == []  # old revision
    assert box.update(rsp.IceState("u2", 3, [candidate(3)])) == []  # not current
    assert box.set_ufrag("u2") == [candidate(3)]
