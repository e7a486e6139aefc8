"""The Rooms REST API, driven by Twilio's own helper library against a real server process."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from .conftest import make_twilio_client
from .server_process import TOKEN, ServerProcess

SID = re.compile(r"^RM[0-9a-f]{32}$")


def unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


def raises_code(code: int, status: int, call: Any) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as info:
        call()
    assert info.value.code == code, info.value.msg
    assert info.value.status == status
    return info.value


def test_created_room_has_every_field_that_was_set(
    twilio_client: Any, server: ServerProcess
) -> None:
    name = unique("settings")
    room = twilio_client.video.v1.rooms.create(
        unique_name=name,
        type="group-small",
        status_callback="http://127.0.0.1:9/callbacks",
        status_callback_method="GET",
        max_participants=3,
        record_participants_on_connect=True,
        empty_room_timeout=7,
        unused_room_timeout=9,
        max_participant_duration=3600,
        audio_only=False,
        video_codecs=["H264"],
        media_region="de1",
    )
    assert SID.match(room.sid)
    assert room.unique_name == name
    assert room.type == "group-small"
    assert room.status == "in-progress"
    assert room.status_callback == "http://127.0.0.1:9/callbacks"
    assert room.status_callback_method == "GET"
    assert room.max_participants == 3
    assert room.record_participants_on_connect is True
    assert room.empty_room_timeout == 7
    assert room.unused_room_timeout == 9
    assert room.max_participant_duration == 3600
    assert room.video_codecs == ["H264"]
    assert room.media_region == "de1"
    assert room.account_sid == server.credentials()["account_sid"]
    assert room.end_time is None and room.duration is None
    assert abs(room.date_created - datetime.now(timezone.utc)) < timedelta(seconds=30)
    assert room.url == f"{server.url}video/v1/Rooms/{room.sid}"
    assert room.links["participants"] == f"{room.url}/Participants"
    assert room.links["recording_rules"] == f"{room.url}/RecordingRules"


def test_create_answers_201_with_defaults(server: ServerProcess) -> None:
    creds = server.credentials()
    response = requests.post(
        f"{server.url}video/v1/Rooms",
        data={"UniqueName": unique("defaults")},
        auth=(creds["api_key_sid"], creds["api_key_secret"]),
        timeout=10,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["type"] == "group"
    assert body["max_participants"] == 50
    assert body["empty_room_timeout"] == 5 and body["unused_room_timeout"] == 5
    assert body["max_participant_duration"] == 14400
    assert body["status_callback_method"] == "POST"
    assert body["record_participants_on_connect"] is False


def test_room_is_fetched_by_sid_and_by_unique_name(twilio_client: Any) -> None:
    name = unique("fetch me")
    created = twilio_client.video.v1.rooms.create(unique_name=name)
    by_sid = twilio_client.video.v1.rooms(created.sid).fetch()
    by_name = twilio_client.video.v1.rooms(name).fetch()
    assert by_sid.sid == by_name.sid == created.sid
    assert by_name.unique_name == name


def test_completing_a_room_ends_it_once(twilio_client: Any) -> None:
    room = twilio_client.video.v1.rooms.create(unique_name=unique("complete"))
    completed = twilio_client.video.v1.rooms(room.sid).update(status="completed")
    assert completed.status == "completed"
    assert completed.end_time is not None
    assert completed.duration is not None and completed.duration >= 0
    raises_code(
        53112, 400, lambda: twilio_client.video.v1.rooms(room.sid).update(status="completed")
    )
    # The name is free again for a new in-progress room, and fetching by name finds that one.
    again = twilio_client.video.v1.rooms.create(unique_name=room.unique_name)
    assert twilio_client.video.v1.rooms(room.unique_name).fetch().sid == again.sid


def test_unique_name_of_a_room_in_progress_is_taken(twilio_client: Any) -> None:
    name = unique("taken")
    twilio_client.video.v1.rooms.create(unique_name=name)
    error = raises_code(53113, 400, lambda: twilio_client.video.v1.rooms.create(unique_name=name))
    assert name in error.msg


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"max_participants": 51}, 53107),
        ({"max_participants": 0}, 53107),
        ({"type": "group-small", "max_participants": 5}, 53107),
        ({"type": "bogus"}, 53108),
        ({"empty_room_timeout": 0}, 53109),
        ({"unused_room_timeout": 61}, 53109),
        ({"max_participant_duration": 10}, 53109),
        ({"status_callback_method": "PUT"}, 53110),
        ({"status_callback": "not a url"}, 53111),
        ({"audio_only": True, "video_codecs": ["VP8"]}, 53114),
        ({"large_room": True}, 53114),
    ],
)
def test_out_of_range_parameters_get_their_twilio_code(
    twilio_client: Any, arguments: dict[str, Any], code: int
) -> None:
    raises_code(code, 400, lambda: twilio_client.video.v1.rooms.create(**arguments))


def test_peer_to_peer_and_go_rooms_are_created(twilio_client: Any) -> None:
    # their rules are in tests/p2p/test_room_types_rest.py
    for room_type in ("peer-to-peer", "go"):
        assert twilio_client.video.v1.rooms.create(type=room_type).type == room_type


def test_unknown_room_is_20404(twilio_client: Any) -> None:
    raises_code(20404, 404, lambda: twilio_client.video.v1.rooms("RM" + "0" * 32).fetch())
    raises_code(20404, 404, lambda: twilio_client.video.v1.rooms("no such room").fetch())


def test_wrong_credentials_are_20003(server: ServerProcess) -> None:
    from twilio.rest import Client

    creds = server.credentials()
    client = Client(creds["api_key_sid"], "wrong-secret", creds["account_sid"])
    client.video.base_url = server.url + "video"
    raises_code(20003, 401, lambda: client.video.v1.rooms.create(unique_name="intruder"))


def test_account_sid_and_auth_token_authenticate(server: ServerProcess) -> None:
    client = make_twilio_client(server, use_account=True)
    room = client.video.v1.rooms.create(unique_name=unique("account auth"))
    assert client.video.v1.rooms(room.sid).fetch().sid == room.sid


def test_jupyter_session_authenticates_and_nothing_else_does(server: ServerProcess) -> None:
    url = f"{server.url}video/v1/Rooms"
    assert (
        requests.get(url, headers={"Authorization": f"token {TOKEN}"}, timeout=10).status_code
        == 200
    )
    for headers in ({}, {"Authorization": "Basic !!!"}, {"Authorization": "token wrong"}):
        response = requests.get(url, headers=headers, timeout=10)
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == 20003
        assert body["status"] == 401
        assert body["more_info"] == "https://www.twilio.com/docs/errors/20003"


class TestMalformedInput:
    """Bad requests get a 400 that says what to fix, and the server keeps serving."""

    def post(self, server: ServerProcess, path: str, data: Any, **kwargs: Any) -> requests.Response:
        creds = server.credentials()
        return requests.post(
            f"{server.url}video/v1/{path}",
            data=data,
            auth=(creds["api_key_sid"], creds["api_key_secret"]),
            timeout=10,
            **kwargs,
        )

    @pytest.mark.parametrize(
        ("data", "code", "words"),
        [
            ({"MaxParticipants": "many"}, 53107, "whole number"),
            ({"EmptyRoomTimeout": "1.5"}, 53109, "whole number"),
            ({"AudioOnly": "yes"}, 20001, "true or false"),
            ({"Color": "blue"}, 20001, "Unknown parameter"),
            ({"UniqueName": "x" * 129}, 53101, "limit is 128"),
            ({"UniqueName": "a/b"}, 53102, "must not contain"),
            ({"UniqueName": "  "}, 53100, "empty"),
            ({"MediaRegion": "mars1"}, 20001, "MediaRegion"),
            ({"VideoCodecs": "VP9"}, 20001, "VP8 or H264"),
            ({"RecordingRules": "{not json"}, 53120, "not valid JSON"),
            ({"RecordingRules": '[{"type": "include", "all": false}]'}, 53120, "must be true"),
            ({"UniqueName": ["a", "b"]}, 20001, "given 2 times"),
        ],
    )
    def test_bad_create_parameters(
        self, server: ServerProcess, data: dict[str, Any], code: int, words: str
    ) -> None:
        response = self.post(server, "Rooms", data)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == code
        assert words in body["message"]
        assert body["status"] == 400

    def test_json_body_is_refused_with_a_hint(self, server: ServerProcess) -> None:
        response = self.post(
            server, "Rooms", '{"UniqueName": "x"}', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert "form-encoded" in response.json()["message"]

    def test_bad_recording_rules_on_update(self, twilio_client: Any, server: ServerProcess) -> None:
        room = twilio_client.video.v1.rooms.create(unique_name=unique("rules"))
        for rules, words in (
            ("nope", "not valid JSON"),
            ("[]", "at least one rule"),
            ('[{"type": "maybe", "all": true}]', "include"),
            ('[{"type": "include", "kind": "smell"}]', "audio, video or data"),
            ('[{"type": "include", "all": true, "kind": "audio"}]', "no other criteria"),
            ('{"rules": 5}', "JSON array"),
        ):
            response = self.post(server, f"Rooms/{room.sid}/RecordingRules", {"Rules": rules})
            assert response.status_code == 400, rules
            assert response.json()["code"] == 53120
            assert words in response.json()["message"], (rules, response.json())
        assert twilio_client.video.v1.rooms(room.sid).recording_rules.fetch().rules == []

    def test_server_keeps_serving_after_bad_requests(
        self, twilio_client: Any, server: ServerProcess
    ) -> None:
        for _ in range(3):
            self.post(server, "Rooms", {"MaxParticipants": "\x00" * 5000})
            self.post(
                server,
                "Rooms",
                b"\xff\xfe garbage",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        room = twilio_client.video.v1.rooms.create(unique_name=unique("still alive"))
        assert twilio_client.video.v1.rooms(room.sid).fetch().status == "in-progress"


def test_recording_rules_are_updated_and_fetched(twilio_client: Any) -> None:
    room = twilio_client.video.v1.rooms.create(unique_name=unique("recording rules"))
    updated = twilio_client.video.v1.rooms(room.sid).recording_rules.update(
        rules=[{"type": "include", "kind": "audio"}, {"type": "exclude", "publisher": "bob"}]
    )
    assert [(r["type"], r["kind"], r["publisher"]) for r in updated.rules] == [
        ("include", "audio", None),
        ("exclude", None, "bob"),
    ]
    fetched = twilio_client.video.v1.rooms(room.sid).recording_rules.fetch()
    assert fetched.rules == updated.rules
    assert fetched.room_sid == room.sid


def test_record_participants_on_connect_starts_with_include_all(twilio_client: Any) -> None:
    room = twilio_client.video.v1.rooms.create(
        unique_name=unique("record all"), record_participants_on_connect=True
    )
    rules = twilio_client.video.v1.rooms(room.sid).recording_rules.fetch().rules
    assert [(r["type"], r["all"]) for r in rules] == [("include", True)]
