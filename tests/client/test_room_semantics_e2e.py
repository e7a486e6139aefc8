"""Room semantics with real participants: rules applied live, REST records, refusals,
and signaling that misbehaves without hurting anyone else.

A real ``jupyter server`` (media in a worker process, on 127.0.0.1), real Python
participants (``jupyter_video.client``) and raw WebSocket clients for the
protocol errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import requests
import websockets

from jupyter_video.client import (
    LocalDataTrack,
    LocalVideoTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    connect,
)
from jupyter_video.errors import AccessTokenError, ParticipantError, RoomError, VideoError
from jupyter_video.tokens import AccessToken, VideoGrant

from ..server_process import ServerProcess
from ..waiting import wait_until
from .participants import LOOPBACK, WAIT, Recorder, room_name, token

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's server: a short session_timeout, for the heartbeat test."""
    process = ServerProcess(
        tmp_path_factory.mktemp("rooms"),
        video_config={
            "ice_host_addresses": LOOPBACK,
            "media_workers": 1,
            "session_timeout": 2.0,
        },
    ).start()
    yield process
    process.stop()


def rest(video_server: ServerProcess, method: str, path: str, **data: Any) -> requests.Response:
    creds = video_server.credentials()
    return requests.request(
        method,
        f"{video_server.url}video/v1/{path}",
        data=data or None,
        auth=(creds["api_key_sid"], creds["api_key_secret"]),
        timeout=10,
    )


def solid(value: int) -> Iterator[np.ndarray]:
    frame = np.full((240, 320, 3), value, np.uint8)
    while True:
        yield frame


async def first_frame(track: RemoteVideoTrack, timeout: float = WAIT) -> np.ndarray:
    async def take() -> np.ndarray:
        async for frame in track.frames():
            return frame
        raise AssertionError("the track ended before any frame")

    return await asyncio.wait_for(take(), timeout)


def video_of(recorder: Recorder) -> Callable[[Any], bool]:
    return lambda event: event.track is not None and event.track.kind == "video"


async def test_rest_lists_what_real_participants_publish_and_subscribe(
    join: Any, video_server: ServerProcess
) -> None:
    name = room_name()
    alice, _ = await join(
        "alice", name, tracks=[LocalVideoTrack.from_frames(solid(200), name="cam")]
    )
    _bob, bob_events = await join("bob", name)
    await bob_events.wait("track_subscribed", video_of(bob_events))
    published = rest(video_server, "GET", f"Rooms/{name}/Participants/alice/PublishedTracks").json()
    assert [(t["name"], t["kind"]) for t in published["published_tracks"]] == [("cam", "video")]
    camera_sid = published["published_tracks"][0]["sid"]
    assert camera_sid == alice.local_participant.tracks[camera_sid].track_sid
    subscribed = await wait_until(
        lambda: rest(video_server, "GET", f"Rooms/{name}/Participants/bob/SubscribedTracks").json()[
            "subscribed_tracks"
        ]
    )
    assert [(t["sid"], t["publisher_sid"], t["kind"]) for t in subscribed] == [
        (camera_sid, alice.local_participant.sid, "video")
    ]
    participants = rest(
        video_server, "GET", f"Rooms/{name}/Participants", Status="connected"
    ).json()
    assert {p["identity"] for p in participants["participants"]} == {"alice", "bob"}


async def test_exclude_rule_stops_a_tracks_frames_and_include_brings_them_back(
    join: Any, video_server: ServerProcess
) -> None:
    name = room_name()
    await join("alice", name, tracks=[LocalVideoTrack.from_frames(solid(180), name="cam")])
    _bob, bob_events = await join("bob", name)
    event = await bob_events.wait("track_subscribed", video_of(bob_events))
    assert isinstance(event.track, RemoteVideoTrack)
    assert (await first_frame(event.track)).mean() > 120
    rules = rest(
        video_server,
        "POST",
        f"Rooms/{name}/Participants/bob/SubscribeRules",
        Rules=json.dumps([{"type": "include", "all": True}, {"type": "exclude", "track": "cam"}]),
    )
    assert rules.status_code == 200, rules.text
    await bob_events.wait("track_unsubscribed", video_of(bob_events))
    assert (
        rest(video_server, "GET", f"Rooms/{name}/Participants/bob/SubscribedTracks").json()[
            "subscribed_tracks"
        ]
        == []
    )
    rest(
        video_server,
        "POST",
        f"Rooms/{name}/Participants/bob/SubscribeRules",
        Rules=json.dumps([{"type": "include", "publisher": "alice"}]),
    )
    again = await bob_events.wait(
        "track_subscribed", lambda e: e is not event and video_of(bob_events)(e)
    )
    assert isinstance(again.track, RemoteVideoTrack)
    assert (await first_frame(again.track)).mean() > 120


async def test_a_late_joiners_first_frame_decodes_cleanly_from_a_keyframe(
    join: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = room_name()
    await join("alice", name, tracks=[LocalVideoTrack.from_frames(solid(90), name="cam")])
    await asyncio.sleep(3)  # the publisher is well past its first keyframe
    caplog.set_level(logging.WARNING, logger="aiortc")
    _late, late_events = await join("late", name)
    event = await late_events.wait("track_subscribed", video_of(late_events))
    assert isinstance(event.track, RemoteVideoTrack)
    frame = await first_frame(event.track)
    assert frame.shape == (240, 320, 3)
    assert abs(float(frame.mean()) - 90) < 8  # the picture, not a grey or green smear
    decode_errors = [r for r in caplog.records if "decode" in r.getMessage().lower()]
    assert decode_errors == []


async def test_an_older_connection_with_the_same_identity_is_displaced_with_53205(
    join: Any,
) -> None:
    name = room_name()
    _first, first_events = await join("dana", name)
    second, _ = await join("dana", name)
    event = await first_events.wait("disconnected")
    assert isinstance(event.error, ParticipantError) and event.error.code == 53205
    assert second.state.value == "connected"


async def test_rest_disconnect_removes_the_participant_at_once(
    join: Any, video_server: ServerProcess
) -> None:
    name = room_name()
    erin, erin_events = await join("erin", name)
    _watcher, watcher_events = await join("watcher", name)
    response = rest(
        video_server,
        "POST",
        f"Rooms/{name}/Participants/{erin.local_participant.sid}",
        Status="disconnected",
    )
    assert response.json()["status"] == "disconnected"
    await erin_events.wait("disconnected")
    await watcher_events.wait(
        "participant_disconnected",
        lambda e: e.participant is not None and e.participant.identity == "erin",
    )


async def test_data_keeps_flowing_for_others_while_garbage_arrives(
    join: Any, video_server: ServerProcess
) -> None:
    name = room_name()
    chat = LocalDataTrack(name="chat")
    _, _ = await join("fay", name, tracks=[chat])
    _, gus_events = await join("gus", name)
    event = await gus_events.wait(
        "track_subscribed", lambda e: e.track is not None and e.track.kind == "data"
    )
    assert isinstance(event.track, RemoteDataTrack)
    ws_url = video_server.url.replace("http://", "ws://") + "video/signaling"
    for garbage in ("not json", json.dumps({"type": "msg", "body": {}}), "[1, 2]"):
        async with websockets.connect(ws_url) as socket:
            await socket.send(garbage)
            reply = json.loads(await asyncio.wait_for(socket.recv(), 5))
            assert reply["type"] == "bad"
            assert reply["reason"].startswith("53004")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 5)
    chat.send("still here")
    message = await gus_events.wait("track_message")
    assert message.message == "still here"


async def test_an_update_before_connect_is_53004_and_closes_only_that_connection(
    video_server: ServerProcess,
) -> None:
    ws_url = video_server.url.replace("http://", "ws://") + "video/signaling"
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"type": "hello", "id": "x", "timeout": 5000, "version": 2}))
        welcome = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert welcome["type"] == "welcome"
        await socket.send(
            json.dumps({"type": "msg", "body": {"type": "update", "version": 2, "session": "nope"}})
        )
        reply = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert reply["type"] == "msg"
        assert reply["body"]["type"] == "error" and reply["body"]["code"] == 53004
        assert "connect first" in reply["body"]["message"]
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
    assert rest(video_server, "GET", "Rooms").status_code == 200


def signed(
    video_server: ServerProcess,
    identity: str,
    room: str | None = None,
    secret: str | None = None,
    **kwargs: Any,
) -> str:
    creds = video_server.credentials()
    access = AccessToken(
        creds["account_sid"],
        creds["api_key_sid"],
        secret or creds["api_key_secret"],
        identity=identity,
        **kwargs,
    )
    access.add_grant(VideoGrant(room=room))
    return access.to_jwt()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda s: "garbage.token.here", 20101),
        (lambda s: signed(s, "mallory", secret="x" * 32), 20107),
        (lambda s: signed(s, "mallory", ttl=-60), 20104),
        (lambda s: signed(s, "mallory", room="another-room"), 20106),
    ],
    ids=["malformed", "bad-signature", "expired", "other-room"],
)
async def test_bad_tokens_are_refused_with_their_code(
    video_server: ServerProcess, make: Callable[[ServerProcess], str], code: int
) -> None:
    with pytest.raises(AccessTokenError) as info:
        await connect(
            make(video_server), "token-room", video_server.url, ice_host_addresses=LOOPBACK
        )
    assert info.value.code == code


async def test_a_client_that_goes_silent_is_dropped_after_its_session_timeout(
    join: Any, video_server: ServerProcess
) -> None:
    name = room_name()
    _, watcher_events = await join("watcher", name)
    ws_url = video_server.url.replace("http://", "ws://") + "video/signaling"
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    connect_body = {
        "type": "connect",
        "version": 2,
        "name": name,
        "token": token(video_server, "ghost"),
        "participant": {"revision": 1, "tracks": []},
        "peer_connections": [
            {
                "id": "pc-1",
                "description": {"type": "offer", "revision": 1, "sdp": pc.localDescription.sdp},
            }
        ],
    }
    try:
        async with websockets.connect(ws_url) as socket:
            # A 1 s heartbeat period: the video_server gives up after 3 s of silence.
            await socket.send(
                json.dumps(
                    {
                        "type": "hello",
                        "id": "g",
                        "timeout": 1000,
                        "version": 2,
                        "body": connect_body,
                    }
                )
            )
            assert json.loads(await socket.recv())["negotiatedTimeout"] == 1000
            connected = json.loads(await socket.recv())["body"]
            assert connected["type"] == "connected"
            ghost_sid = connected["participant"]["sid"]
            await watcher_events.wait("participant_connected")
            with pytest.raises(websockets.ConnectionClosed):
                while True:  # read the server's heartbeats, never answer
                    await asyncio.wait_for(socket.recv(), 10)
        status = await wait_until(
            lambda: (
                rest(video_server, "GET", f"Rooms/{name}/Participants/{ghost_sid}").json()["status"]
                == "disconnected"
            ),
            timeout=10,
        )
        assert status
        await watcher_events.wait("participant_disconnected")
    finally:
        await pc.close()


async def test_a_completed_room_refuses_new_participants_who_get_a_new_room(
    join: Any, video_server: ServerProcess
) -> None:
    name = room_name()
    first, first_events = await join("hal", name)
    rest(video_server, "POST", f"Rooms/{first.sid}", Status="completed")
    event = await first_events.wait("disconnected")
    assert isinstance(event.error, RoomError) and event.error.code == 53118
    # Ad-hoc rooms are on: the name makes a new room.
    second, _ = await join("ivy", name)
    assert second.sid != first.sid


async def test_no_ad_hoc_rooms_means_53106(tmp_path: Any) -> None:
    process = ServerProcess(
        tmp_path / "strict", video_config={"ad_hoc_rooms": False, "media_workers": 0}
    ).start()
    try:
        with pytest.raises(VideoError) as info:
            await connect(token(process, "jo"), "nowhere", process.url, ice_host_addresses=LOOPBACK)
        assert info.value.code == 53106
    finally:
        process.stop()


async def test_the_loudest_participant_is_announced_as_dominant_speaker(join: Any) -> None:
    from jupyter_video.client import LocalAudioTrack

    name = room_name()
    seconds = np.arange(48000 * 8) / 48000
    tone = (np.sin(2 * np.pi * 440 * seconds) * 20000).astype(np.int16)
    listener, listener_events = await join("listener", name, dominant_speaker=True)
    speaker, _ = await join(
        "speaker", name, tracks=[LocalAudioTrack.from_array(tone, sample_rate=48000)]
    )
    event = await listener_events.wait(
        "dominant_speaker_changed", lambda e: e.participant is not None
    )
    assert event.participant is not None
    assert event.participant.sid == speaker.local_participant.sid
    assert listener.dominant_speaker is not None
    assert listener.dominant_speaker.identity == "speaker"
