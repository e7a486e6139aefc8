"""The classroom's state and the monitor's warnings, without a server."""

from __future__ import annotations

import pytest

from jupyter_video.classroom.model import (
    Action,
    ChatMessage,
    ClassroomState,
    assign_evenly,
    breakout_names,
    refuse,
)
from jupyter_video.classroom.monitor import Monitor
from jupyter_video.errors import VideoError


def test_even_assignment_keeps_groups_within_one_of_each_other() -> None:
    rooms = breakout_names("lecture", 3)
    assert rooms == ["lecture-breakout-1", "lecture-breakout-2", "lecture-breakout-3"]
    assignment = assign_evenly([f"s{n}" for n in range(7)], rooms)
    sizes = sorted(list(assignment.values()).count(room) for room in rooms)
    assert sizes == [2, 2, 3]
    with pytest.raises(VideoError) as wrong:
        breakout_names("lecture", 0)
    assert wrong.value.code == 20001


def test_a_mute_holds_only_when_the_room_forbids_unmuting_oneself() -> None:
    state = ClassroomState("lecture")
    state.hold("ada", "audio")
    assert not state.holds("ada", "audio", moderator=False)  # self_unmute (the default)
    state.self_unmute = False
    state.hold("ada", "audio")
    assert state.holds("ada", "audio", moderator=False)
    assert not state.holds("ada", "video", moderator=False)
    state.release("ada", "audio")
    assert not state.holds("ada", "audio", moderator=False)


def test_mute_on_join_holds_everyone_but_moderators_until_released() -> None:
    state = ClassroomState("lecture", mute_on_join=True)
    assert state.holds("newcomer", "audio", moderator=False)
    assert state.holds("newcomer", "video", moderator=False)
    assert not state.holds("teacher", "audio", moderator=True)
    state.release("newcomer", "video")
    assert not state.holds("newcomer", "video", moderator=False)
    assert state.holds("newcomer", "audio", moderator=False)


def test_hands_keep_the_order_raised_and_count_waiting_time() -> None:
    state = ClassroomState("lecture")
    assert state.raise_hand("grace", now=100.0)
    assert state.raise_hand("ada", now=105.0)
    assert not state.raise_hand("grace", now=110.0)
    hands = state.to_json(now=112.0)["hands"]
    assert [(h["identity"], h["waiting_seconds"]) for h in hands] == [("grace", 12.0),
                                                                       ("ada", 7.0)]
    assert state.lower_hand("grace") and not state.lower_hand("grace")


def test_refusals_say_who_may() -> None:
    error = refuse("s2", Action.MUTE)
    assert error.code == 20403 and error.status == 403
    assert "s2 may not mute a participant" in error.message
    assert "VideoApp.moderators" in error.message


def test_chat_messages_need_text_within_the_limit() -> None:
    message = ChatMessage.new("RM" + "0" * 32, "lecture", "ada", "hello")
    assert message.sid.startswith("IM") and message.to_json()["time"].endswith("Z")
    for bad in ("", "   ", "x" * 5000):
        with pytest.raises(VideoError):
            ChatMessage.new("RM" + "0" * 32, "lecture", "ada", bad)


def test_the_monitor_warns_of_recent_loss_per_direction() -> None:
    monitor = Monitor()
    monitor.add("lecture", "lecture", "s2", [
        {"direction": "send", "kind": "audio", "packet_loss": 0.12, "bitrate_kbps": 40},
        {"direction": "receive", "kind": "video", "packet_loss": 0.01},
        {"direction": "sideways", "kind": "audio", "packet_loss": 0.9},  # ignored
        {"direction": "send", "kind": "video", "packet_loss": float("nan")},
    ])
    rows = monitor.rows("lecture")
    assert len(rows) == 3 and rows[-1]["packet_loss"] is None
    assert monitor.warnings("lecture") == ["s2's uplink is losing 12 % of packets"]
    assert monitor.warnings("lecture", now=rows[0]["time"] + 60) == []  # old news


def test_the_state_goes_through_the_sqlite_store_unchanged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from jupyter_video.classroom.model import Breakouts, ClassroomRecord
    from jupyter_video.store.sqlite import SQLiteStore

    state = ClassroomState("lecture", locked=True, mute_on_join=True, self_unmute=False,
                           spotlight="ada")
    state.hold("ada", "audio")
    state.release("grace", "video")
    state.raise_hand("grace", now=100.0)
    state.raise_hand("ada", now=105.5)
    state.breakouts = Breakouts(["lecture-breakout-1"], {"ada": "lecture-breakout-1"}, 2e9,
                                {"teacher": "lecture-breakout-1"})
    state.changed()
    store = SQLiteStore(tmp_path / "store.sqlite")
    store.save(ClassroomRecord.of(state, {"ada", "grace"}))
    store.close()
    record = SQLiteStore(tmp_path / "store.sqlite").get(
        ClassroomRecord, ClassroomRecord.sid_for("lecture"))
    assert record is not None and record.members == ["ada", "grace"]
    assert ClassroomState.from_store("lecture", record.state) == state
    assert ClassroomRecord.sid_for("lecture") != ClassroomRecord.sid_for("lecture2")


def test_only_a_signed_token_with_the_claim_moderates() -> None:
    from jupyter_video.classroom.grant import ClassroomVideoGrant, moderator_claim
    from jupyter_video.tokens import AccessToken, verify_token

    def mint(moderator: bool) -> str:
        token = AccessToken("AC" + "0" * 32, "SK" + "0" * 32, "s" * 32, identity="teacher")
        token.add_grant(ClassroomVideoGrant(room="lecture", moderator=moderator))
        return token.to_jwt()

    for moderator in (True, False):
        claims = verify_token(mint(moderator), account_sid="AC" + "0" * 32,
                              api_keys={"SK" + "0" * 32: "s" * 32})
        assert claims.room == "lecture"
        assert moderator_claim(mint(moderator)) is moderator
    assert moderator_claim("not a token") is False
