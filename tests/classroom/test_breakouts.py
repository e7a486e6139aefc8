"""Breakout rooms with real Python participants: they move without rejoining by hand,
see only their group, hear broadcasts, and all come back on recall."""

from __future__ import annotations

import asyncio
import time

import requests

from .conftest import room_name


def rest_participants(video_server, room: str) -> set[str]:  # type: ignore[no-untyped-def]
    """Connected identities of ``room`` as the Twilio REST API lists them."""
    creds = video_server.credentials()
    auth = (creds["api_key_sid"], creds["api_key_secret"])
    url = f"{video_server.url}video/v1/Rooms/{room}/Participants"
    body = requests.get(url, params={"Status": "connected"}, auth=auth, timeout=10).json()
    return {p["identity"] for p in body["participants"]}


async def wait_completed(video_server, room: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    creds = video_server.credentials()
    auth = (creds["api_key_sid"], creds["api_key_secret"])
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(f"{video_server.url}video/v1/Rooms", timeout=10, auth=auth,
                            params={"UniqueName": room}).json()
        if body["rooms"] and all(r["status"] == "completed" for r in body["rooms"]):
            return
        assert time.monotonic() < deadline, body["rooms"]
        await asyncio.sleep(0.5)


async def sees(seat, identities: set[str], timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while {p.identity for p in seat.room.participants.values()} != identities:
        if time.monotonic() > deadline:
            got = {p.identity for p in seat.room.participants.values()}
            raise AssertionError(f"{seat.identity} sees {got}, not {identities}")
        await asyncio.sleep(0.05)


async def test_four_students_split_into_two_breakouts_see_only_their_group_and_are_recalled(
        video_server, seat, classroom) -> None:
    name = room_name()
    students = [await seat(f"s{n}", name) for n in range(1, 5)]
    teacher = classroom(name)
    opened = teacher.breakout(rooms=2, assignment="even")
    first, second = (room["name"] for room in opened["rooms"])
    assert opened["assignment"] == {"s1": first, "s2": second, "s3": first, "s4": second}
    groups = {first: {"s1", "s3"}, second: {"s2", "s4"}}
    for student in students:
        target = opened["assignment"][student.identity]
        await student.wait_in(target)
        await sees(student, groups[target] - {student.identity})
    # Breakouts are ordinary rooms: REST shows each with its participants, linked here.
    for room, group in groups.items():
        assert rest_participants(video_server, room) == group
    assert rest_participants(video_server, name) == set()
    records = {r["name"]: r for r in teacher.records()["rooms"]}
    assert records[first]["breakout_of"] == name and records[first]["sid"].startswith("RM")
    assert set(records[second]["participants"]) == groups[second]

    teacher.broadcast("Five minutes left")
    for student in students:
        await student.channel.wait(
            lambda m: m["type"] == "broadcast" and m["text"] == "Five minutes left")

    teacher.recall()
    for student in students:
        await student.wait_in(name)
    for student in students:
        await sees(student, {s.identity for s in students} - {student.identity})
    assert rest_participants(video_server, name) == {"s1", "s2", "s3", "s4"}
    assert all(student.moves == 2 for student in students)
    assert teacher.state["breakouts"] is None
    # Once everyone has left them, the breakouts are completed (their records stay).
    await wait_completed(video_server, first)
    await wait_completed(video_server, second)


async def test_breakouts_from_a_list_of_groups_end_with_their_countdown(seat, classroom) -> None:
    name = room_name()
    students = [await seat(identity, name) for identity in ("ana", "ben", "cy")]
    teacher = classroom(name)
    opened = teacher.breakout(assignment=[["ana", "cy"], ["ben"]], duration=3)
    assert opened["ends_at"] is not None
    ana, ben, _ = students
    await ana.wait_in(opened["assignment"]["ana"])
    await sees(ana, {"cy"})
    await ben.wait_in(opened["assignment"]["ben"])
    await sees(ben, set())
    for student in students:  # the countdown recalls everyone by itself
        await student.wait_in(name, timeout=15)
    await sees(ana, {"ben", "cy"})


async def test_a_moderator_visits_a_breakout(video_server, seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    await seat("s2", name)
    teacher_seat = await seat("teacher", name)
    teacher = classroom(name)
    opened = teacher.breakout(rooms=2)
    target = opened["assignment"]["s1"]
    await s1.wait_in(target)
    assert teacher_seat.room_name == name  # the moderator stays until they visit
    await teacher_seat.channel.act("visit", room=target)
    await teacher_seat.wait_in(target)
    await sees(s1, {"teacher"})
