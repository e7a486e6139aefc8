"""Raised hands and the chat history, with real Python participants."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3

import pytest

from jupyter_video.errors import VideoError

from .conftest import room_name


async def test_raised_hands_are_listed_in_order_with_their_waiting_time(
        seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    s2 = await seat("s2", name)
    s3 = await seat("s3", name)
    await s2.raise_hand()
    await asyncio.sleep(1.1)
    await s1.raise_hand()
    await s1.raise_hand()  # twice is once
    teacher = classroom(name)
    hands = teacher.hands
    assert [h["identity"] for h in hands] == ["s2", "s1"]
    assert hands[0]["waiting_seconds"] >= 1.0 > hands[1]["waiting_seconds"]
    raised = {p["identity"]: p["hand_raised"] for p in teacher.participants}
    assert raised == {"s1": True, "s2": True, "s3": False}
    # Everyone's channel shows the hands (the widget lists them from it).
    await s3.channel.wait(lambda m: m["type"] == "state" and len(m["hands"]) == 2)

    with pytest.raises(VideoError) as refused:
        await s3.channel.act("lower_hand", identity="s2")
    assert refused.value.code == 20403
    with pytest.raises(VideoError) as refused:
        await s3.channel.act("lower_all_hands")
    assert refused.value.code == 20403
    assert len(teacher.hands) == 2

    await s1.lower_hand()
    assert [h["identity"] for h in teacher.hands] == ["s2"]
    await s1.raise_hand()
    teacher.lower_hand("s2")
    assert [h["identity"] for h in teacher.hands] == ["s1"]
    teacher.lower_all_hands()
    assert teacher.hands == []


async def test_a_late_joiner_sees_the_earlier_chat(video_server, seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    s2 = await seat("s2", name)
    await s1.send_chat("Is question 3 about eigenvalues?")
    teacher = classroom(name)
    teacher.send_chat("Yes: page 12")
    await s2.channel.wait(lambda m: m["type"] == "chat" and m["message"]["text"] == "Yes: page 12")
    assert [m["text"] for m in s2.chat_history()] == [
        "Is question 3 about eigenvalues?", "Yes: page 12"]

    late = await seat("late", name)
    history = late.chat_history()
    assert [(m["identity"], m["text"]) for m in history] == [
        ("s1", "Is question 3 about eigenvalues?"), ("the teacher", "Yes: page 12")]
    assert await late.room.chat_history() == history  # room.chat_history() in Python

    # Kept in the store with the room's records.
    with sqlite3.connect(video_server.root / "store.sqlite") as db:
        rows = db.execute(
            "SELECT json_extract(data, '$.text'), json_extract(data, '$.room_sid') "
            "FROM records WHERE kind = 'chat_message' AND json_extract(data, '$.room_name') = ?",
            (name,)).fetchall()
    assert sorted(text for text, _ in rows) == ["Is question 3 about eigenvalues?",
                                                "Yes: page 12"]
    assert {room_sid for _, room_sid in rows} == {history[0]["room_sid"]}
    assert history[0]["room_sid"].startswith("RM")


async def test_the_chat_exports_as_csv_and_json(tmp_path, seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    await s1.send_chat("first, with a comma")
    await s1.send_chat('second "quoted"')
    teacher = classroom(name)
    with open(teacher.export_chat(tmp_path / "chat.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["identity"], r["text"]) for r in rows] == [
        ("s1", "first, with a comma"), ("s1", 'second "quoted"')]
    assert all(r["time"].endswith("Z") and r["room"] == name for r in rows)
    exported = json.loads(teacher.export_chat(tmp_path / "chat.json").read_text())
    assert [m["text"] for m in exported] == ["first, with a comma", 'second "quoted"']

    with pytest.raises(VideoError) as empty:
        await s1.send_chat("   ")
    assert empty.value.code == 20001
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        teacher.export_chat(tmp_path / "chat.txt")


async def test_a_reaction_reaches_everyone_in_the_room(seat) -> None:
    name = room_name()
    s1 = await seat("s1", name)
    s2 = await seat("s2", name)
    elsewhere = await seat("s3", name + "-other")
    await s1.react("clap")
    message = await s2.channel.wait(lambda m: m["type"] == "reaction")
    assert (message["identity"], message["reaction"]) == ("s1", "clap")
    assert s1.reactions and s1.reactions[0]["reaction"] == "clap"
    assert elsewhere.reactions == []
    with pytest.raises(VideoError) as wrong:
        await s1.react("shrug")
    assert wrong.value.code == 20001 and "thumbs_up" in wrong.value.message


async def test_the_monitor_says_who_is_speaking(video_server, seat, classroom) -> None:
    from jupyter_video.classroom import attend

    from ..client.participants import LOOPBACK, token
    from .conftest import media_tracks

    name = room_name()
    listener = await attend(token(video_server, "listener"), name, video_server.url,
                            identity="listener", ice_host_addresses=LOOPBACK,
                            dominant_speaker=True)
    try:
        await seat("speaker", name, tracks=media_tracks)
        teacher = classroom(name)
        deadline = asyncio.get_running_loop().time() + 20
        while teacher.monitor_data()["speaking"] != {name: "speaker"}:
            assert asyncio.get_running_loop().time() < deadline, teacher.monitor_data()["speaking"]
            await asyncio.sleep(0.5)
    finally:
        await listener.leave()
