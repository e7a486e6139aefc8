"""Moderation with real Python participants: mute, unmute policy, remove, lock,
the mute-on-join guard and spotlight; non-moderators are refused and nothing changes."""

from __future__ import annotations

import asyncio
import time

import pytest

from jupyter_video.classroom.channel import request, room_path
from jupyter_video.client import connect
from jupyter_video.errors import RoomError, VideoError

from ..client.participants import LOOPBACK, token
from .conftest import media_tracks, room_name
from .hearing import Ear, remote_track

GRACE = 0.5  # seconds for packets already on the wire when forwarding stops


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def published(classroom, identity: str, kind: str) -> dict:  # type: ignore[no-untyped-def]
    for participant in classroom.participants:
        if participant["identity"] == identity:
            return next(t for t in participant["tracks"] if t["kind"] == kind)
    raise AssertionError(f"{identity} is not connected")


async def test_a_moderator_mutes_a_student_and_the_others_stop_hearing_them(
        video_server, seat, classroom) -> None:
    name = room_name()
    # The speaker has no classroom channel (as a twilio-video app): it keeps sending
    # its tone, so silence at the listener is the SFU's doing.
    speaker = await connect(token(video_server, "s1"), name, video_server.url,
                            tracks=media_tracks(), ice_host_addresses=LOOPBACK)
    listener = await seat("s2", name)
    ear = Ear(await remote_track(listener, "s1", "audio"))
    try:
        await ear.wait_loud()

        # A student may not mute anyone: refused with 20403, and s1 is still heard.
        with pytest.raises(VideoError) as refused:
            await listener.channel.act("mute", identity="s1", kind="audio")
        assert refused.value.code == 20403
        assert "only a moderator" in refused.value.message
        await asyncio.sleep(0.5)
        assert ear.loud_since(time.monotonic() - 0.4) > 5
        assert published(classroom(name), "s1", "audio")["enabled"] is True

        result = classroom(name).mute("s1", "audio")
        muted_at = time.monotonic()
        assert len(result["tracks"]) == 1
        await asyncio.sleep(2.0)
        assert ear.loud_since(muted_at + GRACE) == 0, "s1 is still heard after the mute"
        assert published(classroom(name), "s1", "audio")["enabled"] is False
        assert published(classroom(name), "s1", "video")["enabled"] is True  # only the mic
        remote = next(p for p in listener.room.participants.values() if p.identity == "s1")
        await wait_for(lambda: not next(
            t for t in remote.tracks.values() if t.kind == "audio").is_enabled)
    finally:
        ear.stop()
        await speaker.disconnect()


async def test_the_muted_student_is_told_and_may_unmute_when_the_room_allows(
        seat, classroom) -> None:
    name = room_name()
    speaker = await seat("s1", name, tracks=media_tracks)
    listener = await seat("s2", name)
    classroom(name).mute("s1", "audio")
    notice = await speaker.channel.wait(lambda m: m["type"] == "muted")
    assert "muted by the teacher" in notice["text"]
    assert notice["may_unmute"] is True
    mic = next(p.track for p in speaker.room.local_participant.tracks.values()
               if p.kind == "audio")
    assert mic.is_enabled is False  # the student's own side shows it muted too
    mic.enable()  # the room allows unmuting oneself (the default)
    ear = Ear(await remote_track(listener, "s1", "audio"))
    await ear.wait_loud()
    ear.stop()


async def test_a_muted_student_may_not_unmute_until_the_teacher_allows(
        seat, classroom) -> None:
    name = room_name()
    speaker = await seat("s1", name, tracks=media_tracks)
    listener = await seat("s2", name)
    teacher = classroom(name)
    teacher.settings(self_unmute=False)
    teacher.mute("s1", "audio")
    notice = await speaker.channel.wait(lambda m: m["type"] == "muted")
    assert notice["may_unmute"] is False
    mic = next(p.track for p in speaker.room.local_participant.tracks.values()
               if p.kind == "audio")
    mic.enable()  # tries anyway (as a twilio-video app that knows nothing of classrooms)
    await asyncio.sleep(1.5)
    assert published(teacher, "s1", "audio")["enabled"] is False
    ear = Ear(await remote_track(listener, "s1", "audio"))
    await asyncio.sleep(1.0)
    assert ear.loud_since(0) == 0
    teacher.allow_unmute("s1", "audio")
    await speaker.channel.wait(lambda m: m["type"] == "unmute_allowed")
    mic.disable()
    mic.enable()
    await wait_for(lambda: published(teacher, "s1", "audio")["enabled"] is True)
    await ear.wait_loud()
    ear.stop()


async def test_a_locked_room_refuses_a_new_join_with_a_clear_message(
        video_server, seat, classroom) -> None:
    name = room_name()
    await seat("s1", name)
    teacher = classroom(name)
    assert teacher.lock() == {"locked": True}
    with pytest.raises(RoomError) as refused:
        await connect(token(video_server, "latecomer"), name, video_server.url,
                      ice_host_addresses=LOOPBACK)
    assert refused.value.code == 53105
    assert "locked by its moderator" in refused.value.message
    assert [p["identity"] for p in teacher.participants] == ["s1"]
    teacher.unlock()
    latecomer = await connect(token(video_server, "latecomer"), name, video_server.url,
                              ice_host_addresses=LOOPBACK)
    assert {p["identity"] for p in teacher.participants} == {"s1", "latecomer"}
    await latecomer.disconnect()


async def test_a_student_cannot_lock_remove_or_spotlight(seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    await seat("s2", name)
    for action, args in (("lock", {}), ("remove", {"identity": "s2"}),
                         ("spotlight", {"identity": "s1"}),
                         ("settings", {"mute_on_join": True})):
        with pytest.raises(VideoError) as refused:
            await s1.channel.act(action, **args)
        assert refused.value.code == 20403, action
    state = classroom(name).state
    assert state["locked"] is False and state["spotlight"] is None
    assert state["mute_on_join"] is False
    assert {p["identity"] for p in state["participants"]} == {"s1", "s2"}


async def test_removing_a_participant_disconnects_them(seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    await seat("s2", name)
    classroom(name).remove("s1")
    await s1.channel.wait(lambda m: m["type"] == "removed")
    await wait_for(lambda: s1.room.state.value == "disconnected")
    assert [p["identity"] for p in classroom(name).participants] == ["s2"]


async def test_mute_on_join_holds_new_students_microphone_and_camera(seat, classroom) -> None:
    name = room_name()
    await seat("teacher", name)  # a moderator by VideoApp.moderators
    classroom(name).settings(mute_on_join=True, self_unmute=False)
    student = await seat("s1", name, tracks=media_tracks)
    state = classroom(name)
    assert published(state, "s1", "audio")["enabled"] is False
    assert published(state, "s1", "video")["enabled"] is False
    assert student.channel.state["you"]["held"] == ["audio", "video"]
    await seat("teacher", name, tracks=media_tracks)  # a moderator joining is not held
    assert published(state, "teacher", "audio")["enabled"] is True


async def test_spotlight_is_seen_by_everyone(seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    s2 = await seat("s2", name)
    classroom(name).spotlight("s2")
    for who in (s1, s2):
        await who.channel.wait(lambda m: m["type"] == "state" and m["spotlight"] == "s2")
    with pytest.raises(VideoError) as unknown:
        classroom(name).spotlight("nobody")
    assert unknown.value.code == 53204


async def test_only_a_moderator_watches_the_monitor(seat) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    with pytest.raises(VideoError) as refused:
        await asyncio.to_thread(request, s1.server, room_path(name) + "/monitor",
                                headers={"X-Video-Token": s1._token})
    assert refused.value.code == 20403
