"""The control plane's view of the media plane: typed commands and events that
travel as JSON lines, and errors that keep Twilio's codes."""

from __future__ import annotations

import json

import pytest

from jupyter_video.errors import MediaError, ParticipantError, RoomError
from jupyter_video.sfu.interface import (
    AddIceCandidate,
    BindPublication,
    Command,
    ConnectionStateChanged,
    Event,
    MediaPlane,
    PeerState,
    Subscribe,
    TrackReceived,
    WorkerExited,
    command_from_json,
    dumps,
    event_from_json,
    to_json,
)

from .peers import ROOM, PatternTrack, sid, wait_for_event


@pytest.mark.parametrize(
    "command",
    [
        BindPublication("PA1", "track-id", "MT1", "video"),
        Subscribe("PA2", "MT1"),
        AddIceCandidate("PA1", None),
    ],
)
def test_commands_travel_as_one_json_line(command: Command) -> None:
    line = dumps(to_json(command))
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert command_from_json(json.loads(line)) == command


@pytest.mark.parametrize(
    "event",
    [
        TrackReceived("PA1", "track-id", "audio", "stream", "0", "audio/opus"),
        ConnectionStateChanged("PA1", PeerState.FAILED, 53405),
        WorkerExited(0, -9, [ROOM], ["PA1"]),
    ],
)
def test_events_travel_as_one_json_line(event: Event) -> None:
    assert event_from_json(json.loads(dumps(to_json(event)))) == event


async def test_errors_keep_their_twilio_code(plane: MediaPlane, clients) -> None:
    with pytest.raises(ParticipantError) as unknown:
        await plane.apply_offer(sid("PA", 99), "v=0")
    assert unknown.value.code == 53204

    client = clients(1)
    await client.join()
    with pytest.raises(MediaError) as bad_offer:
        await plane.apply_offer(client.sid, "this is not SDP")
    assert bad_offer.value.code == 53403

    with pytest.raises(RoomError) as no_room:
        await plane.close_room("RM" + "f" * 32)
    assert no_room.value.code == 53106


async def test_trickled_ice_candidates_are_accepted(plane: MediaPlane, clients) -> None:
    client = clients(1)
    await client.join()
    client.pc.addTransceiver(PatternTrack(), direction="sendonly")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    sdp = client.pc.localDescription.sdp
    candidate = next(line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:"))
    await plane.apply_offer(client.sid, sdp)

    await plane.add_ice_candidate(client.sid, candidate, "0", 0)
    await plane.add_ice_candidate(client.sid, None)
    with pytest.raises(MediaError) as invalid:
        await plane.add_ice_candidate(client.sid, "candidate:nonsense", "0", 0)
    assert invalid.value.code == 53403


async def test_closing_a_room_closes_every_peer(plane: MediaPlane, clients) -> None:
    first, second = clients(1), clients(2)
    await first.join()
    await second.join()

    await plane.close_room(ROOM)

    closed = set()
    while closed != {first.sid, second.sid}:
        event = await wait_for_event(
            plane,
            lambda e: isinstance(e, ConnectionStateChanged) and e.state == PeerState.CLOSED,
        )
        closed.add(event.participant_sid)  # type: ignore[attr-defined]
    [stats] = await plane.stats()
    assert (stats.rooms, stats.peers) == (0, 0)
