"""Participants, their tracks and SubscribeRules over REST, through Twilio's helper library.

Participants are put into the server's rooms with the test-only registry
driver (the same registry calls signaling makes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from .conftest import make_twilio_client
from .server_process import ServerProcess


@pytest.fixture(scope="module")
def driven(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("driven"), driver=True).start()
    yield process
    process.stop()


@pytest.fixture
def client(driven: ServerProcess) -> Any:
    return make_twilio_client(driven)


def new_room(client: Any) -> Any:
    return client.video.v1.rooms.create(unique_name=f"people-{time.monotonic_ns()}")


def join(server: ServerProcess, room: Any, identity: str) -> str:
    return str(server.drive("participants", room=room.sid, identity=identity)["sid"])


def test_participants_are_listed_fetched_and_filtered(client: Any, driven: ServerProcess) -> None:
    room = new_room(client)
    alice = join(driven, room, "alice")
    bob = join(driven, room, "bob")
    listed = client.video.v1.rooms(room.sid).participants.list()
    assert {p.sid for p in listed} == {alice, bob}
    assert {p.identity for p in listed} == {"alice", "bob"}
    assert all(p.status == "connected" and p.room_sid == room.sid for p in listed)
    by_identity = client.video.v1.rooms(room.sid).participants("bob").fetch()
    assert by_identity.sid == bob
    assert by_identity.links["subscribe_rules"].endswith(f"/Participants/{bob}/SubscribeRules")
    only_alice = client.video.v1.rooms(room.sid).participants.list(identity="alice")
    assert [p.sid for p in only_alice] == [alice]
    paged = client.video.v1.rooms(room.sid).participants.list(page_size=1)
    assert {p.sid for p in paged} == {alice, bob}


def test_disconnecting_a_participant_over_rest_ends_its_presence(
    client: Any, driven: ServerProcess
) -> None:
    room = new_room(client)
    carol = join(driven, room, "carol")
    gone = client.video.v1.rooms(room.sid).participants(carol).update(status="disconnected")
    assert gone.status == "disconnected"
    assert gone.end_time is not None and gone.duration is not None and gone.duration >= 0
    assert [
        p.sid for p in client.video.v1.rooms(room.sid).participants.list(status="connected")
    ] == []
    assert [
        p.sid for p in client.video.v1.rooms(room.sid).participants.list(status="disconnected")
    ] == [carol]
    with pytest.raises(TwilioRestException) as info:
        client.video.v1.rooms(room.sid).participants(carol).update(status="disconnected")
    assert info.value.code == 53112
    with pytest.raises(TwilioRestException) as info:
        client.video.v1.rooms(room.sid).participants("carol").fetch()
    assert info.value.code == 20404


def test_completing_a_room_disconnects_everyone(client: Any, driven: ServerProcess) -> None:
    room = new_room(client)
    join(driven, room, "dave")
    join(driven, room, "erin")
    client.video.v1.rooms(room.sid).update(status="completed")
    statuses = {p.status for p in client.video.v1.rooms(room.sid).participants.list()}
    assert statuses == {"disconnected"}


def test_published_and_subscribed_tracks_are_listed(client: Any, driven: ServerProcess) -> None:
    room = new_room(client)
    alice = join(driven, room, "alice")
    bob = join(driven, room, "bob")
    camera = driven.drive("tracks", participant_sid=alice, name="camera", kind="video")["sid"]
    microphone = driven.drive("tracks", participant_sid=alice, name="mic", kind="audio")["sid"]
    driven.drive("subscriptions", participant_sid=bob, track_sid=camera)
    published = client.video.v1.rooms(room.sid).participants(alice).published_tracks.list()
    assert {(t.sid, t.name, t.kind, t.enabled) for t in published} == {
        (camera, "camera", "video", True),
        (microphone, "mic", "audio", True),
    }
    fetched = client.video.v1.rooms(room.sid).participants(alice).published_tracks(camera).fetch()
    assert fetched.participant_sid == alice and fetched.room_sid == room.sid
    subscribed = client.video.v1.rooms(room.sid).participants(bob).subscribed_tracks.list()
    assert [(t.sid, t.publisher_sid, t.kind, t.name) for t in subscribed] == [
        (camera, alice, "video", "camera")
    ]
    one = client.video.v1.rooms(room.sid).participants(bob).subscribed_tracks(camera).fetch()
    assert one.participant_sid == bob
    with pytest.raises(TwilioRestException) as info:
        client.video.v1.rooms(room.sid).participants(bob).subscribed_tracks(microphone).fetch()
    assert info.value.code == 20404


def test_subscribe_rules_default_to_all_and_are_replaced(
    client: Any, driven: ServerProcess
) -> None:
    room = new_room(client)
    alice = join(driven, room, "alice")
    rules = client.video.v1.rooms(room.sid).participants(alice).subscribe_rules.fetch()
    assert [(r["type"], r["all"]) for r in rules.rules] == [("include", True)]
    updated = (
        client.video.v1.rooms(room.sid)
        .participants(alice)
        .subscribe_rules.update(
            rules=[{"type": "include", "kind": "audio"}, {"type": "include", "publisher": "bob"}]
        )
    )
    assert [(r["type"], r["kind"], r["publisher"]) for r in updated.rules] == [
        ("include", "audio", None),
        ("include", None, "bob"),
    ]
    assert updated.participant_sid == alice and updated.room_sid == room.sid
    again = client.video.v1.rooms(room.sid).participants(alice).subscribe_rules.fetch()
    assert again.rules == updated.rules


@pytest.mark.parametrize(
    ("rules", "words"),
    [
        ("{broken", "not valid JSON"),
        ("[]", "at least one rule"),
        ('[{"all": true}]', "type"),
        ('[{"type": "include"}]', "needs one of"),
        ('[{"type": "include", "kind": "hologram"}]', "audio, video or data"),
        ('[{"type": "include", "color": "red"}]', "unknown fields"),
        ("[" + ",".join(['{"type": "include", "all": true}'] * 21) + "]", "at most 20"),
    ],
)
def test_bad_subscribe_rules_are_53215(
    client: Any, driven: ServerProcess, rules: str, words: str
) -> None:
    room = new_room(client)
    alice = join(driven, room, "alice")
    creds = driven.credentials()
    response = requests.post(
        f"{driven.url}video/v1/Rooms/{room.sid}/Participants/{alice}/SubscribeRules",
        data={"Rules": rules},
        auth=(creds["api_key_sid"], creds["api_key_secret"]),
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["code"] == 53215
    assert words in response.json()["message"]
    current = client.video.v1.rooms(room.sid).participants(alice).subscribe_rules.fetch()
    assert [(r["type"], r["all"]) for r in current.rules] == [("include", True)]


def test_full_room_refuses_the_next_participant(client: Any, driven: ServerProcess) -> None:
    room = client.video.v1.rooms.create(
        unique_name=f"small-{time.monotonic_ns()}", max_participants=1
    )
    join(driven, room, "first")
    response = requests.post(
        f"{driven.url}video-test/participants",
        json={"room": room.sid, "identity": "second"},
        headers={"Authorization": "token test-jupyter-token"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["code"] == 53105
    assert len(client.video.v1.rooms(room.sid).participants.list()) == 1
