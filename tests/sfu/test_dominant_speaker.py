"""The dominant speaker, from every packet's ``ssrc-audio-level`` between two updates."""

from __future__ import annotations

from jupyter_video.sfu.interface import DominantSpeakerChanged, Event
from jupyter_video.sfu.peer import Peer
from jupyter_video.sfu.publication import MediaPublication
from jupyter_video.sfu.room import Room

ROOM = "RM" + "1" * 32
QUIET = 127  # -dBov of digital silence
FIRST, SECOND = "PA" + "1" * 32, "PA" + "2" * 32


def room_of(*publishers: str) -> tuple[Room, list[Event], list[MediaPublication]]:
    events: list[Event] = []
    room = Room(ROOM, events.append)
    publications = []
    for sid in publishers:
        room.add_peer(Peer(sid, room, events.append))
        room.bind(sid, f"{sid}-microphone", "MT" + sid[2:], "audio")
        publications.append(room.media_publication(sid, f"{sid}-microphone", "audio"))
    return room, events, publications


def speakers(events: list[Event]) -> list[str | None]:
    return [e.participant_sid for e in events if isinstance(e, DominantSpeakerChanged)]


def hear(publication: MediaPublication, levels: list[int]) -> None:
    for level in levels:
        publication.speech.add(level)


async def test_a_voice_between_two_updates_is_heard() -> None:
    """Chromium's fake microphone beeps 20 ms of each 500: one packet in 25."""
    room, events, (beeper, silent) = room_of(FIRST, SECOND)
    hear(beeper, [QUIET] * 7 + [20] + [QUIET] * 17)
    hear(silent, [QUIET] * 25)
    room.update_dominant_speaker()
    assert speakers(events) == [FIRST]


async def test_the_speaker_stays_through_silence_and_changes_when_another_speaks() -> None:
    room, events, (first, second) = room_of(FIRST, SECOND)
    hear(first, [10] * 25)
    room.update_dominant_speaker()
    for _ in range(3):  # nobody speaks, or nothing arrives (DTX)
        hear(first, [QUIET] * 25)
        room.update_dominant_speaker()
    assert speakers(events) == [FIRST]
    hear(second, [30] * 25)
    room.update_dominant_speaker()
    assert speakers(events) == [FIRST, SECOND]


async def test_someone_louder_takes_over_only_by_a_margin() -> None:
    room, events, (first, second) = room_of(FIRST, SECOND)
    hear(first, [40] * 25)
    room.update_dominant_speaker()
    hear(first, [40] * 25)
    hear(second, [35] * 25)  # a little louder: no flapping between two talkers
    room.update_dominant_speaker()
    assert speakers(events) == [FIRST]
    hear(first, [55] * 25)
    hear(second, [10] * 25)
    room.update_dominant_speaker()
    assert speakers(events) == [FIRST, SECOND]


async def test_a_speaker_who_leaves_is_no_longer_dominant() -> None:
    room, events, (first, _) = room_of(FIRST, SECOND)
    hear(first, [10] * 25)
    room.update_dominant_speaker()
    await room.remove_peer(FIRST)
    assert speakers(events) == [FIRST, None]
