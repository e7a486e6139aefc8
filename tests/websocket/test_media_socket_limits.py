"""What a media socket does with bad input and slow readers: only that participant
pays (its socket closed with a Twilio code), never the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from jupyter_video.client import LocalDataTrack, LocalVideoTrack, RemoteDataTrack, RemoteVideoTrack
from jupyter_video.client.websocket_peer_connection import WebSocketPeerConnection
from jupyter_video.signaling import mediasocket as ms

from ..client.participants import WAIT, room_name, subscribed_to
from ..client.test_client_e2e import collect_frames, pattern_frames
from ..server_process import ServerProcess

pytestmark = pytest.mark.timeout(120)


def socket_of(room: Any) -> WebSocketPeerConnection:
    pc = room._pc.pc
    assert isinstance(pc, WebSocketPeerConnection)
    return pc


async def frames_per_second(track: RemoteVideoTrack, seconds: float) -> float:
    start, began = track.frames_received, time.monotonic()
    await asyncio.sleep(seconds)
    return (track.frames_received - start) / (time.monotonic() - began)


BAD_MESSAGES = {
    "unknown type": [b"\x09\x00\x00\x00"],
    "oversized": [b"\x01" + b"\x00" * (ms.MAX_MESSAGE_SIZE + 10)],
    "out of order": [
        ms.control_message("publish", channel=900, mid="0", codec="VP8"),
        ms.frame_messages(900, 5, 0, True, b"\x00" * 10, 0)[0],
        ms.frame_messages(900, 3, 0, False, b"\x01" * 10, 0)[0],
    ],
    "not JSON": ["{nope"],
}


@pytest.mark.parametrize("kind", sorted(BAD_MESSAGES))
async def test_a_bad_media_message_closes_only_that_socket_with_53004(
        join, video_server: ServerProcess, kind: str) -> None:
    name = room_name()
    alice, _ = await join("alice", name, transport="websocket", tracks=[
        LocalVideoTrack.from_frames(pattern_frames(), fps=20)])
    _, bob_events = await join("bob", name, transport="websocket")
    _, carol_events = await join("carol", name, transport="webrtc")
    mallory, mallory_events = await join("mallory", name, transport="websocket", tracks=[
        LocalVideoTrack.from_frames(pattern_frames(), fps=20)])
    at_bob = (await bob_events.wait("track_subscribed", lambda e: e.participant is not None
                                    and e.participant.identity == "alice")).track
    at_carol = (await carol_events.wait("track_subscribed", lambda e: e.participant is not None
                                        and e.participant.identity == "alice")).track
    assert isinstance(at_bob, RemoteVideoTrack) and isinstance(at_carol, RemoteVideoTrack)

    # mallory's media socket, opened by hand with its signaling session (it replaces
    # the one its client opened)
    url = video_server.url.replace("http://", "ws://").rstrip("/") + "/video/media"
    async with ws_connect(url, compression=None) as raw:
        await raw.send(ms.control_message("hello", session=mallory._session))
        assert json.loads(await raw.recv())["type"] == "welcome"
        for message in BAD_MESSAGES[kind]:
            await raw.send(message)
        told = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                told.append(await asyncio.wait_for(raw.recv(), WAIT))
        assert raw.close_code == 4004 and raw.close_reason is not None
        assert raw.close_reason.startswith("53004: ")
    errors = [json.loads(m) for m in told if isinstance(m, str) and '"error"' in m]
    assert [e["code"] for e in errors] == [53004]
    event = await mallory_events.wait("disconnected")
    assert event.error is not None and event.error.code == 53004
    await bob_events.wait("participant_disconnected")
    # everyone else goes on: alice's video still reaches both transports
    assert await frames_per_second(at_bob, 1.5) >= 10
    assert await frames_per_second(at_carol, 1.5) >= 10
    assert alice.state.value == "connected"


async def test_a_slow_subscriber_does_not_slow_the_others(join) -> None:
    name = room_name()
    await join("alice", name, transport="websocket", tracks=[
        LocalVideoTrack.from_frames(pattern_frames((480, 640)), fps=20)])
    slow, slow_events = await join("slow", name, transport="websocket")
    _, fast_events = await join("fast", name, transport="websocket")
    _, webrtc_events = await join("webrtc", name, transport="webrtc")
    tracks = []
    for events in (slow_events, fast_events, webrtc_events):
        track = (await events.wait("track_subscribed", subscribed_to("video"))).track
        assert isinstance(track, RemoteVideoTrack)
        tracks.append(track)
    _, fast, webrtc = tracks
    assert len(await collect_frames(fast, 10)) == 10
    socket_of(slow)._pause_reading(True)
    # 3 s: under the 5 s after which a reader that takes nothing is disconnected (53405)
    rates = await asyncio.gather(frames_per_second(fast, 3), frames_per_second(webrtc, 3))
    assert min(rates) >= 15, rates  # of the 20 published
    socket_of(slow)._pause_reading(False)
    # ... and the slow one, reading again, is still in the room and gets video again.
    await asyncio.sleep(1.0)
    assert slow.state.value == "connected"
    assert await frames_per_second(tracks[0], 2) >= 10


async def test_a_stalled_subscriber_is_disconnected_with_53405(join) -> None:
    name = room_name()
    chat = LocalDataTrack(name="bulk")
    await join("alice", name, transport="websocket", tracks=[chat])
    stalled, stalled_events = await join("stalled", name, transport="websocket")
    _, reader_events = await join("reader", name, transport="websocket")
    at_reader = (await reader_events.wait("track_subscribed", subscribed_to("data"))).track
    await stalled_events.wait("track_subscribed", subscribed_to("data"))
    assert isinstance(at_reader, RemoteDataTrack)
    socket_of(stalled)._pause_reading(True)

    received = 0

    async def read() -> None:
        nonlocal received
        async for _ in at_reader.messages():
            received += 1

    reading = asyncio.ensure_future(read())
    blob = b"\x00" * 16384  # the largest data message the SFU forwards (max_data_message_bytes)
    began = time.monotonic()
    try:
        while stalled.state.value != "disconnected" and time.monotonic() - began < 40:
            chat.send(blob)  # 20 a second: the stalled socket acks none, its window is full
            await asyncio.sleep(0.05)
    finally:
        reading.cancel()
    event = await stalled_events.wait("disconnected", timeout=WAIT)
    assert event.error is not None and event.error.code == 53405, event.error
    assert received >= 0.8 * (time.monotonic() - began) / 0.05 * 0.5  # the reader kept up


@pytest.mark.parametrize("hello", [
    {"session": "not-a-session"},
    {"participant": "PA00000000000000000000000000000000", "key": "x"},
    {"participant": "<alice>", "key": "wrong"},
])
async def test_a_socket_without_a_participants_credential_is_refused_with_53204(
        join, video_server: ServerProcess, hello: dict[str, str]) -> None:
    alice, _ = await join("alice", room_name(), transport="websocket")
    if hello.get("participant") == "<alice>":
        hello = {**hello, "participant": alice.local_participant.sid}
    url = video_server.url.replace("http://", "ws://").rstrip("/") + "/video/media"
    async with ws_connect(url, compression=None) as raw:
        await raw.send(ms.control_message("hello", **hello))
        told = json.loads(await asyncio.wait_for(raw.recv(), WAIT))
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(raw.recv(), WAIT)
    assert told["type"] == "error" and told["code"] == 53204
    assert raw.close_code == 4204
    assert alice.state.value == "connected"  # the participant itself is untouched
