"""The object model's state machines and rules, without I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jupyter_video.errors import VideoError
from jupyter_video.model import (
    Participant,
    ParticipantStatus,
    Room,
    RoomStatus,
    TrackFacts,
    parse_rules,
)
from jupyter_video.model.rules import evaluate

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def room(**kwargs: object) -> Room:
    return Room(
        sid="RM" + "a" * 32,
        account_sid="AC" + "b" * 32,
        unique_name="lab",
        date_created=T0,
        **kwargs,
    )  # type: ignore[arg-type]


def test_room_completes_once_and_knows_its_duration() -> None:
    r = room()
    r.transition(RoomStatus.COMPLETED, T0 + timedelta(seconds=90))
    assert r.status is RoomStatus.COMPLETED
    assert r.duration == 90
    with pytest.raises(VideoError) as info:
        r.transition(RoomStatus.FAILED)
    assert info.value.code == 53112


def test_unused_room_expires_after_its_unused_timeout() -> None:
    r = room(unused_room_timeout=3, empty_room_timeout=7)
    assert r.expires_at() == T0 + timedelta(minutes=3)


def test_occupied_room_never_expires_and_empty_room_expires_after_empty_timeout() -> None:
    r = room(unused_room_timeout=3, empty_room_timeout=7)
    r.participant_joined()
    assert r.expires_at() is None
    left = T0 + timedelta(minutes=20)
    r.participants_left(left)
    assert r.expires_at() == left + timedelta(minutes=7)
    r.transition(RoomStatus.COMPLETED)
    assert r.expires_at() is None


def test_participant_reconnects_and_disconnects_for_good() -> None:
    p = Participant(
        sid="PA" + "c" * 32,
        room_sid="RM" + "a" * 32,
        account_sid="AC",
        identity="alice",
        start_time=T0,
    )
    p.transition(ParticipantStatus.RECONNECTING, T0)
    p.transition(ParticipantStatus.CONNECTED, T0)
    p.transition(ParticipantStatus.DISCONNECTED, T0 + timedelta(seconds=42))
    assert p.duration == 42
    with pytest.raises(VideoError) as info:
        p.transition(ParticipantStatus.CONNECTED)
    assert info.value.code == 53112


def test_records_round_trip_with_times_and_enums() -> None:
    r = room(video_codecs=["H264"])
    r.transition(RoomStatus.COMPLETED, T0 + timedelta(seconds=5))
    again = Room.from_record(r.to_record())
    assert again == r
    assert again.status is RoomStatus.COMPLETED and again.end_time == T0 + timedelta(seconds=5)


CAMERA = TrackFacts("MT1", "camera", "video", "PA1", "alice")
MIC = TrackFacts("MT2", "mic", "audio", "PA1", "alice")
BOB_CAMERA = TrackFacts("MT3", "camera", "video", "PA2", "bob")


@pytest.mark.parametrize(
    ("rules", "selected"),
    [
        ('[{"type": "include", "all": true}]', {"MT1", "MT2", "MT3"}),
        ('[{"type": "exclude", "all": true}]', set()),
        ('[{"type": "include", "kind": "audio"}]', {"MT2"}),
        ('[{"type": "include", "publisher": "alice"}]', {"MT1", "MT2"}),
        ('[{"type": "include", "publisher": "PA2"}]', {"MT3"}),
        ('[{"type": "include", "track": "camera"}]', {"MT1", "MT3"}),
        ('[{"type": "include", "all": true}, {"type": "exclude", "track": "MT1"}]', {"MT2", "MT3"}),
        ('[{"type": "include", "publisher": "alice", "kind": "video"}]', {"MT1"}),
        (
            '[{"type": "exclude", "kind": "video"}, {"type": "include", "publisher": "bob"}]',
            {"MT3"},
        ),
    ],
)
def test_rules_apply_in_order(rules: str, selected: set[str]) -> None:
    parsed = parse_rules(rules, 53215)
    chosen = {f.track_sid for f in (CAMERA, MIC, BOB_CAMERA) if evaluate(parsed, f)}
    assert chosen == selected


def test_rules_object_form_is_accepted() -> None:
    parsed = parse_rules('{"rules": [{"type": "include", "kind": "data"}]}', 53215)
    assert parsed[0].kind == "data"
