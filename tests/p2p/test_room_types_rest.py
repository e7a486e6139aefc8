"""Go and Peer-to-Peer rooms over REST, with Twilio's own helper library: each type is
created and read back with Twilio's fields, and what needs the SFU (recording, media
region, codecs, audio-only) is refused with the code Twilio gives for the type."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException

from ..conftest import make_twilio_client
from ..server_process import ServerProcess


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


def refused(code: int, call: Any) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as info:
        call()
    assert info.value.code == code, info.value.msg
    assert info.value.status == 400
    return info.value


@pytest.mark.parametrize(
    ("room_type", "limit"), [("peer-to-peer", 10), ("go", 2), ("group", 50), ("group-small", 4)]
)
def test_each_room_type_is_created_and_read_back_with_its_participant_limit(
    twilio_client: Any, room_type: str, limit: int
) -> None:
    name = unique(room_type)
    created = twilio_client.video.v1.rooms.create(unique_name=name, type=room_type)
    assert created.type == room_type
    assert created.max_participants == limit
    fetched = twilio_client.video.v1.rooms(name).fetch()
    assert (fetched.sid, fetched.type, fetched.status) == (created.sid, room_type, "in-progress")
    assert fetched.max_participants == limit
    assert fetched.record_participants_on_connect is False
    listed = twilio_client.video.v1.rooms.list(unique_name=name)
    assert [room.type for room in listed] == [room_type]


def test_a_peer_to_peer_room_takes_a_smaller_participant_limit(twilio_client: Any) -> None:
    room = twilio_client.video.v1.rooms.create(type="peer-to-peer", max_participants=3)
    assert room.max_participants == 3


@pytest.mark.parametrize(("room_type", "too_many"), [("peer-to-peer", 11), ("go", 3)])
def test_more_participants_than_the_type_allows_is_53107(
    twilio_client: Any, room_type: str, too_many: int
) -> None:
    error = refused(
        53107,
        lambda: twilio_client.video.v1.rooms.create(type=room_type, max_participants=too_many),
    )
    assert room_type in error.msg


@pytest.mark.parametrize("room_type", ["peer-to-peer", "go"])
@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"record_participants_on_connect": True}, 53122),
        ({"recording_rules": {"rules": [{"type": "include", "all": True}]}}, 53122),
        ({"audio_only": True}, 53124),
        ({"video_codecs": ["VP8"]}, 53114),
        ({"media_region": "de1"}, 53114),
        ({"large_room": True}, 53114),
    ],
)
def test_what_needs_the_sfu_is_refused_in_rooms_without_one(
    twilio_client: Any, room_type: str, arguments: dict[str, Any], code: int
) -> None:
    error = refused(
        code, lambda: twilio_client.video.v1.rooms.create(type=room_type, **arguments)
    )
    assert room_type in error.msg and "group" in error.msg


def test_the_same_parameters_are_fine_in_a_group_room(twilio_client: Any) -> None:
    room = twilio_client.video.v1.rooms.create(
        type="group", record_participants_on_connect=True, media_region="de1",
        video_codecs=["VP8"],
    )
    assert room.record_participants_on_connect is True
    assert room.media_region == "de1"


def test_recording_requested_on_a_peer_to_peer_room_is_53122(twilio_client: Any) -> None:
    room = twilio_client.video.v1.rooms.create(type="peer-to-peer")
    refused(
        53122,
        lambda: twilio_client.video.v1.rooms(room.sid).recording_rules.update(
            rules=[{"type": "include", "all": True}]
        ),
    )
    rules = twilio_client.video.v1.rooms(room.sid).recording_rules.fetch()
    assert rules.rules == []
    assert twilio_client.video.v1.rooms(room.sid).recordings.list() == []


@pytest.fixture(scope="module")
def peer_to_peer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("p2p-default"), video_config={"default_room_type": "peer-to-peer"}
    ).start()
    yield process
    process.stop()


def test_rooms_created_without_a_type_take_the_servers_default_type(
    peer_to_peer_server: ServerProcess,
) -> None:
    client = make_twilio_client(peer_to_peer_server)
    room = client.video.v1.rooms.create(unique_name=unique("default"))
    assert room.type == "peer-to-peer"
    assert room.max_participants == 10
    # the default type's rules apply to a request that names no type
    refused(53122, lambda: client.video.v1.rooms.create(record_participants_on_connect=True))
    assert client.video.v1.rooms.create(type="group").type == "group"


def test_an_unknown_type_is_53108_naming_the_types_offered(twilio_client: Any) -> None:
    error = refused(53108, lambda: twilio_client.video.v1.rooms.create(type="mesh"))
    for room_type in ("go", "peer-to-peer", "group", "group-small"):
        assert f"'{room_type}'" in error.msg
