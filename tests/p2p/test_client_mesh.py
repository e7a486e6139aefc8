"""Python participants (``jupyter_video.client``) in Go and Peer-to-Peer rooms: one
aiortc peer connection per other participant, the same SDK as in group rooms, and
nothing through the SFU."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from twilio.base.exceptions import TwilioRestException

from jupyter_video.client import (
    LocalAudioTrack,
    LocalDataTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    Room,
    connect,
)
from jupyter_video.errors import RoomError

from ..client import conftest as client_suite
from ..client.conftest import loopback_only  # noqa: F401 - ICE on 127.0.0.1, as there
from ..client.participants import LOOPBACK, WAIT, Recorder, room_name, subscribed_to, token
from ..client.test_client_e2e import (
    collect_frames,
    decode_index,
    dominant_frequency,
    pattern_frames,
    tones,
)
from ..conftest import make_twilio_client
from ..server_process import ServerProcess
from ..test_status_callbacks import Receiver, assert_signed_by
from .mesh import media_plane_counters

pytestmark = pytest.mark.timeout(120)

# The client suite's server (one media worker, for the module) and its join() ->
# (room, recorder), everyone leaving at the end.
video_server = client_suite.video_server
join = client_suite.join


def peer_to_peer_room(server: ServerProcess, room_type: str = "peer-to-peer") -> str:
    room = make_twilio_client(server).video.v1.rooms.create(unique_name=room_name(),
                                                           type=room_type)
    return str(room.unique_name)


def forwarded(server: ServerProcess) -> float:
    return media_plane_counters(server)["jupyter_video_packets_forwarded_total"]


def open_peer_connections(room: Room) -> int:
    return sum(pc.pc.connectionState == "connected" for pc in room._peer_connections.values())


async def test_two_python_participants_exchange_video_audio_and_data_peer_to_peer(
    join: Callable[..., Any], video_server: ServerProcess
) -> None:
    name = peer_to_peer_room(video_server)
    before = forwarded(video_server)
    alice_chat, bob_chat = LocalDataTrack(name="chat"), LocalDataTrack(name="chat")
    alice, alice_events = await join("alice", name, tracks=[
        LocalVideoTrack.from_frames(pattern_frames((240, 320)), fps=20), alice_chat])
    bob, bob_events = await join("bob", name, tracks=[
        LocalVideoTrack.from_frames(pattern_frames((120, 160)), fps=20),
        LocalAudioTrack.from_array(tones()), bob_chat])

    at_bob = (await bob_events.wait("track_subscribed", subscribed_to("video"))).track
    at_alice = (await alice_events.wait("track_subscribed", subscribed_to("video"))).track
    assert isinstance(at_bob, RemoteVideoTrack) and isinstance(at_alice, RemoteVideoTrack)
    for track, shape in ((at_bob, (240, 320, 3)), (at_alice, (120, 160, 3))):
        frames = await collect_frames(track, 20)
        assert len(frames) == 20 and all(f.shape == shape for f in frames)
        assert sum(decode_index(f) is not None for f in frames[5:]) >= 12

    sound = (await alice_events.wait("track_subscribed", subscribed_to("audio"))).track
    assert isinstance(sound, RemoteAudioTrack)
    samples = np.concatenate([f.mean(axis=1) for f in await collect_frames(sound, 50)])
    assert np.abs(samples).max() > 3000
    assert round(dominant_frequency(samples[-4800:], sound.sample_rate), -1) in (440, 1000)

    for sender, events, text in ((alice_chat, bob_events, "to bob"),
                                 (bob_chat, alice_events, "to alice")):
        track = (await events.wait("track_subscribed", subscribed_to("data"))).track
        assert isinstance(track, RemoteDataTrack)
        sender.send(text)
        await events.wait("track_message", lambda e, text=text: e.message == text)

    # one peer connection each, straight to the other; nothing forwarded by the SFU
    assert open_peer_connections(alice) == open_peer_connections(bob) == 1
    assert forwarded(video_server) == before


async def test_three_python_participants_each_receive_both_others(
    join: Callable[..., Any], video_server: ServerProcess
) -> None:
    name = peer_to_peer_room(video_server)
    shapes = {"ann": (240, 320), "ben": (180, 240), "cat": (120, 160)}
    joined = {identity: await join(identity, name, tracks=[
        LocalVideoTrack.from_frames(pattern_frames(shape), fps=15)])
        for identity, shape in shapes.items()}
    for identity, (room, events) in joined.items():
        for other, shape in shapes.items():
            if other == identity:
                continue
            event = await events.wait("track_subscribed", lambda e, other=other: (
                e.participant is not None and e.participant.identity == other
                and e.track is not None and e.track.kind == "video"))
            assert isinstance(event.track, RemoteVideoTrack)
            frames = await collect_frames(event.track, 10)
            assert len(frames) == 10 and frames[-1].shape == (*shape, 3), identity
        assert open_peer_connections(room) == 2

    ann, ann_events = joined["ann"]
    await joined["cat"][0].disconnect()
    await ann_events.wait("participant_disconnected")
    await asyncio.sleep(0.5)
    assert open_peer_connections(ann) == 1  # only the pair with cat closed
    ben_at_ann = next(p for p in ann.participants.values() if p.identity == "ben")
    [publication] = ben_at_ann.tracks.values()
    assert isinstance(publication.track, RemoteVideoTrack)
    assert len(await collect_frames(publication.track, 5)) == 5


async def test_tracks_published_at_the_same_moment_at_both_ends_reach_the_other(
    join: Callable[..., Any], video_server: ServerProcess
) -> None:
    """Glare: both offer on their pair at once; the server relays the first and drops the
    other, whose sender answers and offers again."""
    name = peer_to_peer_room(video_server)
    alice, alice_events = await join("alice", name)
    bob, bob_events = await join("bob", name)
    await alice_events.wait("participant_connected")
    await asyncio.gather(
        alice.local_participant.publish_track(
            LocalVideoTrack.from_frames(pattern_frames((240, 320)), fps=15)),
        bob.local_participant.publish_track(
            LocalVideoTrack.from_frames(pattern_frames((120, 160)), fps=15)))
    for events, shape in ((bob_events, (240, 320, 3)), (alice_events, (120, 160, 3))):
        track = (await events.wait("track_subscribed", subscribed_to("video"))).track
        assert isinstance(track, RemoteVideoTrack)
        frames = await collect_frames(track, 5)
        assert len(frames) == 5 and frames[-1].shape == shape


async def test_a_go_room_refuses_a_third_python_participant_with_53105(
    join: Callable[..., Any], video_server: ServerProcess
) -> None:
    name = peer_to_peer_room(video_server, "go")
    await join("one", name)
    await join("two", name)
    with pytest.raises(RoomError) as info:
        await join("three", name)
    assert info.value.code == 53105


@pytest.fixture(scope="module")
def go_by_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("go-default"),
        video_config={"ice_host_addresses": LOOPBACK, "media_workers": 1,
                      "default_room_type": "go"},
    ).start()
    yield process
    process.stop()


async def test_an_ad_hoc_room_takes_the_default_type(go_by_default: ServerProcess) -> None:
    name = room_name()
    first = await connect(token(go_by_default, "first"), name, go_by_default.url,
                          ice_host_addresses=LOOPBACK,
                          tracks=[LocalVideoTrack.from_frames(pattern_frames(), fps=15)])
    try:
        room = make_twilio_client(go_by_default).video.v1.rooms(name).fetch()
        assert (room.type, room.max_participants) == ("go", 2)
        second = await connect(token(go_by_default, "second"), name, go_by_default.url,
                               ice_host_addresses=LOOPBACK)
        events = Recorder(second)
        track = (await events.wait("track_subscribed", subscribed_to("video"))).track
        assert isinstance(track, RemoteVideoTrack)
        assert len(await collect_frames(track, 5, timeout=WAIT)) == 5
        await second.disconnect()
    finally:
        await first.disconnect()


async def test_a_lost_signaling_connection_resumes_every_pair_with_sync(
    join: Callable[..., Any], video_server: ServerProcess
) -> None:
    name = peer_to_peer_room(video_server)
    chat = LocalDataTrack(name="chat")
    alice, alice_events = await join("alice", name, tracks=[chat])
    _, bob_events = await join("bob", name)
    data = (await bob_events.wait("track_subscribed", subscribed_to("data"))).track
    assert isinstance(data, RemoteDataTrack)

    assert alice._signaling is not None and alice._signaling._ws is not None
    alice._signaling._ws.transport.abort()  # the network drops the WebSocket
    await alice_events.wait("reconnecting")
    await alice_events.wait("reconnected")
    assert open_peer_connections(alice) == 1  # synced listed the pair: still up

    chat.send("still here")
    messages = data.messages()
    assert await asyncio.wait_for(anext(messages), WAIT) == "still here"
    await messages.aclose()
    # and the pair negotiates as before: a track published after the reconnect arrives
    await alice.local_participant.publish_track(
        LocalVideoTrack.from_frames(pattern_frames((120, 160)), fps=15))
    video = (await bob_events.wait("track_subscribed", subscribed_to("video"))).track
    assert isinstance(video, RemoteVideoTrack)
    assert len(await collect_frames(video, 5)) == 5


async def test_every_track_is_subscribed_even_without_automatic_subscription(
    join: Callable[..., Any], video_server: ServerProcess
) -> None:
    """Each peer connection carries all of its sender's tracks: there are no subscribe
    rules to apply in a peer-to-peer room (53117 over REST)."""
    name = peer_to_peer_room(video_server)
    await join("alice", name, tracks=[LocalVideoTrack.from_frames(pattern_frames(), fps=15)])
    _, bob_events = await join("bob", name, automatic_subscription=False)
    video = (await bob_events.wait("track_subscribed", subscribed_to("video"))).track
    assert isinstance(video, RemoteVideoTrack)
    assert len(await collect_frames(video, 5)) == 5

    participant = make_twilio_client(video_server).video.v1.rooms(name).participants("bob")
    with pytest.raises(TwilioRestException) as refused:
        await asyncio.to_thread(participant.subscribe_rules.update,
                                rules=[{"type": "exclude", "all": True}])
    assert refused.value.code == 53117 and "peer-to-peer" in refused.value.msg
    subscribed = await asyncio.to_thread(participant.subscribed_tracks.list)
    assert [track.kind for track in subscribed] == ["video"]


async def test_the_auto_transport_stays_on_webrtc_alone_in_a_peer_to_peer_room(
    video_server: ServerProcess,
) -> None:
    name = peer_to_peer_room(video_server)
    room = await connect(token(video_server, "alone"), name, video_server.url,
                         ice_host_addresses=LOOPBACK, transport="auto")
    try:
        assert room.transport == "webrtc" and room.state.value == "connected"
        assert room._peer_connections == {}  # its first peer connection had no other end
    finally:
        await room.disconnect()


async def test_status_callbacks_report_a_peer_to_peer_room_as_a_group_room_is_reported(
    join: Callable[..., Any], video_server: ServerProcess
) -> None:
    receiver = Receiver()
    try:
        url = receiver.url("ok")
        client = make_twilio_client(video_server)
        room = await asyncio.to_thread(client.video.v1.rooms.create, unique_name=room_name(),
                                       type="peer-to-peer", status_callback=url)
        alice, _ = await join("alice", room.unique_name, tracks=[LocalDataTrack(name="chat")])
        bob, _ = await join("bob", room.unique_name)
        await asyncio.to_thread(receiver.wait_for, url, lambda got: [r.event for r in got]
                                .count("participant-connected") == 2)
        await bob.disconnect()
        await asyncio.to_thread(receiver.wait_for_event, url, "participant-disconnected")
        await asyncio.to_thread(client.video.v1.rooms(room.sid).update, status="completed")
        got = await asyncio.to_thread(receiver.wait_for_event, url, "room-ended")
    finally:
        receiver.close()
    assert [r.event for r in got] == [
        "room-created", "participant-connected", "track-added", "participant-connected",
        "participant-disconnected", "track-removed", "participant-disconnected", "room-ended",
    ]
    assert {r.params["RoomType"] for r in got} == {"peer-to-peer"}
    assert got[2].params["TrackKind"] == "data" and got[2].params["TrackName"] == "chat"
    assert got[2].params["ParticipantSid"] == alice.local_participant.sid
    assert_signed_by(video_server.credentials()["auth_token"], got)
