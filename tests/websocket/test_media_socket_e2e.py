"""Python participants over the media socket, in rooms with WebRTC participants."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from jupyter_video.client import LocalDataTrack, LocalVideoTrack, RemoteDataTrack, RemoteVideoTrack
from jupyter_video.client.websocket_peer_connection import WebSocketPeerConnection

from ..client.participants import LOOPBACK, WAIT, room_name, subscribed_to
from ..client.test_client_e2e import LEVELS, collect_frames, decode_index, pattern_frames
from ..server_process import ServerProcess

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module", params=[1, 0], ids=["media-worker", "in-process"])
def video_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Media in a worker process, and in the server's own (``media_workers = 0``): the
    relay to the media plane is the same Unix socket either way."""
    process = ServerProcess(
        tmp_path_factory.mktemp("websocket-e2e"),
        video_config={"ice_host_addresses": LOOPBACK, "media_workers": request.param},
    ).start()
    yield process
    process.stop()


def assert_pattern(frames: list[np.ndarray], shape: tuple[int, int, int]) -> None:
    """The frames are the published pattern, at its size, in order."""
    assert len(frames) >= 20
    assert all(f.shape == shape and f.dtype == np.uint8 for f in frames)
    decoded = [decode_index(f) for f in frames[5:]]
    indices = [i for i in decoded if i is not None]
    assert len(indices) == len(decoded), decoded
    steps = [(b - a) % LEVELS for a, b in itertools.pairwise(indices)]
    assert all(0 <= s <= 10 for s in steps), indices
    assert sum(s > 0 for s in steps) >= len(steps) // 2


@pytest.mark.parametrize("socket_side", ["publisher", "subscriber", "both"])
async def test_video_reaches_the_other_transport_at_its_size_and_pattern(
        join, socket_side: str) -> None:
    name = room_name()
    alice_transport = "websocket" if socket_side in ("publisher", "both") else "webrtc"
    bob_transport = "websocket" if socket_side in ("subscriber", "both") else "webrtc"
    alice, _ = await join("alice", name, transport=alice_transport, tracks=[
        LocalVideoTrack.from_frames(pattern_frames((240, 320)), fps=20)])
    bob, bob_events = await join("bob", name, transport=bob_transport, tracks=[
        LocalVideoTrack.from_frames(pattern_frames((120, 160)), fps=20)])
    assert (alice.transport, bob.transport) == (alice_transport, bob_transport)

    at_bob = (await bob_events.wait("track_subscribed", subscribed_to("video"))).track
    assert isinstance(at_bob, RemoteVideoTrack)
    assert_pattern(await collect_frames(at_bob, 30), (240, 320, 3))
    if alice_transport == "websocket":  # the frames did take the socket
        assert isinstance(alice._pc.pc, WebSocketPeerConnection)
        assert alice._pc.pc.frames_sent >= 30
    if bob_transport == "websocket":
        assert isinstance(bob._pc.pc, WebSocketPeerConnection)
        assert bob._pc.pc.frames_received >= 30


async def test_data_messages_go_both_ways_between_transports(join) -> None:
    name = room_name()
    socket_chat, webrtc_chat = LocalDataTrack(name="chat"), LocalDataTrack(name="chat")
    _, socket_events = await join("alice", name, transport="websocket", tracks=[socket_chat])
    _, webrtc_events = await join("bob", name, transport="webrtc", tracks=[webrtc_chat])
    at_bob = (await webrtc_events.wait("track_subscribed", subscribed_to("data"))).track
    at_alice = (await socket_events.wait("track_subscribed", subscribed_to("data"))).track
    assert isinstance(at_bob, RemoteDataTrack) and isinstance(at_alice, RemoteDataTrack)
    await asyncio.sleep(0.5)  # both channels open
    sent: list[str | bytes] = [f"message {i}" for i in range(50)] + [b"\x00\x01bytes"]
    for message in sent:
        socket_chat.send(message)
        webrtc_chat.send(message)

    async def read(track: RemoteDataTrack) -> list[str | bytes]:
        received: list[str | bytes] = []
        async for message in track.messages():
            received.append(message)
            if len(received) == len(sent):
                break
        return received

    assert await asyncio.wait_for(read(at_bob), WAIT) == sent
    assert await asyncio.wait_for(read(at_alice), WAIT) == sent
