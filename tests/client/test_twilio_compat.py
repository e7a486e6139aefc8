"""What Twilio apps rely on, with Twilio's own helper library for REST and real Python
participants: rooms joined by SID, lenient REST values, ``automatic_subscription``
off until REST SubscribeRules say otherwise, regions and recording at connect.

twilio-video.js in Chromium does the same in tests/widgets/test_twilio_compat_browser.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

from jupyter_video.client import LocalDataTrack, LocalVideoTrack, RemoteVideoTrack, connect
from jupyter_video.errors import AccessTokenError, VideoError
from jupyter_video.tokens import AccessToken, VideoGrant

from ..conftest import make_twilio_client
from ..server_process import ServerProcess
from ..waiting import wait_until
from .participants import LOOPBACK, WAIT, room_name, token

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("compat"),
        video_config={"ice_host_addresses": LOOPBACK, "media_workers": 1, "region": "de1"},
    ).start()
    yield process
    process.stop()


@pytest.fixture
def client(video_server: ServerProcess) -> Any:
    return make_twilio_client(video_server)


def granted_token(server: ServerProcess, identity: str, room: str) -> str:
    creds = server.credentials()
    access = AccessToken(creds["account_sid"], creds["api_key_sid"], creds["api_key_secret"],
                         identity=identity)
    access.add_grant(VideoGrant(room=room))
    return access.to_jwt()


def bright(value: int) -> Iterator[np.ndarray]:
    frame = np.full((240, 320, 3), value, np.uint8)
    while True:
        yield frame


def test_rooms_created_without_or_with_an_empty_unique_name_are_named_by_their_sid(
    client: Any,
) -> None:
    for room in (client.video.v1.rooms.create(), client.video.v1.rooms.create(unique_name="")):
        assert room.sid.startswith("RM")
        assert room.unique_name == room.sid
        assert client.video.v1.rooms(room.sid).fetch().unique_name == room.sid


def test_rule_values_sent_as_strings_are_accepted(client: Any, video_server: ServerProcess
                                                  ) -> None:
    room = client.video.v1.rooms.create(
        unique_name=room_name(), record_participants_on_connect="True", audio_only="false",
        recording_rules={"rules": [{"type": "include", "all": "true"}]},
    )
    assert room.record_participants_on_connect is True and room.audio_only is False
    rules = client.video.v1.rooms(room.sid).recording_rules.fetch()
    assert rules.rules == [{"type": "include", "all": True, "publisher": None, "track": None,
                            "kind": None, "priority": None}]
    # Still refused: what Twilio refuses.
    creds = video_server.credentials()
    refused = requests.post(
        f"{video_server.url}video/v1/Rooms/{room.sid}/RecordingRules",
        data={"Rules": json.dumps([{"type": "include", "all": "yes"}])},
        auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=10)
    assert refused.status_code == 400 and refused.json()["code"] == 53120
    assert "'yes'" in refused.json()["message"]


async def test_a_room_created_over_rest_is_joined_by_its_sid(
    client: Any, video_server: ServerProcess
) -> None:
    created = client.video.v1.rooms.create(unique_name=room_name())
    rooms = []
    try:
        by_sid = await connect(token(video_server, "by-sid"), created.sid, video_server.url,
                               ice_host_addresses=LOOPBACK)
        rooms.append(by_sid)
        # The token may name the room by SID and the client connect by unique name.
        by_name = await connect(granted_token(video_server, "by-name", created.sid),
                                created.unique_name, video_server.url,
                                ice_host_addresses=LOOPBACK)
        rooms.append(by_name)
        assert by_sid.sid == by_name.sid == created.sid
        assert by_sid.name == created.unique_name
        await wait_until(lambda: len(by_sid.participants) == 1)
        participants = client.video.v1.rooms(created.sid).participants.list(status="connected")
        assert sorted(p.identity for p in participants) == ["by-name", "by-sid"]
        # A token for another room is still refused, whichever way it names them.
        other = client.video.v1.rooms.create(unique_name=room_name())
        with pytest.raises(AccessTokenError) as raised:
            await connect(granted_token(video_server, "stray", other.sid), created.sid,
                          video_server.url, ice_host_addresses=LOOPBACK)
        assert raised.value.code == 20106
    finally:
        for room in rooms:
            await room.disconnect()


async def test_completed_and_unknown_room_sids_are_refused_with_their_codes(
    client: Any, video_server: ServerProcess
) -> None:
    created = client.video.v1.rooms.create(unique_name=room_name())
    client.video.v1.rooms(created.sid).update(status="completed")
    with pytest.raises(VideoError) as completed:
        await connect(token(video_server, "late"), created.sid, video_server.url,
                      ice_host_addresses=LOOPBACK)
    assert completed.value.code == 53118
    with pytest.raises(VideoError) as unknown:
        await connect(token(video_server, "lost"), "RM" + "0" * 32, video_server.url,
                      ice_host_addresses=LOOPBACK)
    assert unknown.value.code == 53106
    # No room was created under either SID.
    assert [r.sid for r in client.video.v1.rooms.list(unique_name="RM" + "0" * 32)] == []


async def test_without_automatic_subscription_nothing_arrives_until_rest_rules_say_so(
    client: Any, video_server: ServerProcess
) -> None:
    name = room_name()
    publisher = await connect(
        token(video_server, "publisher"), name, video_server.url, ice_host_addresses=LOOPBACK,
        tracks=[LocalVideoTrack.from_frames(bright(200)), LocalDataTrack(name="chat")])
    viewer = await connect(token(video_server, "viewer"), name, video_server.url,
                           ice_host_addresses=LOOPBACK, automatic_subscription=False)
    try:
        videos: list[RemoteVideoTrack] = []
        viewer.on("track_subscribed", lambda event: videos.append(event.track))
        await wait_until(lambda: any(len(p.tracks) == 2 for p in viewer.participants.values()))
        room = client.video.v1.rooms(name)
        rules = room.participants(viewer.local_participant.sid).subscribe_rules.fetch()
        assert [(r["type"], r["all"]) for r in rules.rules] == [("exclude", True)]
        await asyncio.sleep(2.0)  # long enough for any subscription to have happened
        assert videos == []
        assert room.participants(viewer.local_participant.sid).subscribed_tracks.list() == []

        room.participants(viewer.local_participant.sid).subscribe_rules.update(
            rules=[{"type": "include", "kind": "video"}])
        track = await wait_until(lambda: next(iter(videos), None))
        assert isinstance(track, RemoteVideoTrack)
        frame = await asyncio.wait_for(anext(aiter(track.frames())), WAIT)
        assert frame.shape == (240, 320, 3) and abs(float(frame.mean()) - 200) < 10
        subscribed = room.participants(viewer.local_participant.sid).subscribed_tracks.list()
        assert [t.kind for t in subscribed] == ["video"]
    finally:
        await viewer.disconnect()
        await publisher.disconnect()


async def test_connected_carries_the_servers_region_and_recording_state(
    client: Any, video_server: ServerProcess
) -> None:
    recorded = client.video.v1.rooms.create(unique_name=room_name(),
                                            record_participants_on_connect=True)
    assert recorded.media_region == "de1"  # VideoApp.region, for rooms created without one
    room = await connect(token(video_server, "first"), recorded.sid, video_server.url,
                         ice_host_addresses=LOOPBACK,
                         tracks=[LocalVideoTrack.from_frames(bright(100))])
    try:
        assert room.media_region == "de1"
        assert room.is_recording  # already at connect: the room records from the start
    finally:
        await room.disconnect()
    elsewhere = client.video.v1.rooms.create(unique_name=room_name(), media_region="us1")
    room = await connect(token(video_server, "second"), elsewhere.sid, video_server.url,
                         ice_host_addresses=LOOPBACK)
    try:
        assert room.media_region == "us1" and not room.is_recording
    finally:
        await room.disconnect()
