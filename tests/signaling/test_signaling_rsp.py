"""RSP v2 bodies: the real captures parse, malformed ones say which field is wrong."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_video.errors import SignalingError
from jupyter_video.signaling import rsp

FIXTURES = Path(__file__).parent / "fixtures"


def frames(name: str) -> list[dict[str, Any]]:
    """Recorded frames of one capture (see the file's "note")."""
    return json.loads((FIXTURES / name).read_text())["frames"]


def client_bodies(name: str) -> list[dict[str, Any]]:
    """Every RSP body twilio-video sent in a capture, hello bodies included."""
    bodies = []
    for row in frames(name):
        frame = row["frame"]
        if row["dir"] == "in" and frame["type"] in ("hello", "msg") and "body" in frame:
            bodies.append(frame["body"])
    return bodies


def first(name: str, kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(b for b in client_bodies(name) if b["type"] == kind))


CAPTURES = sorted(p.name for p in FIXTURES.glob("capture_*.json"))


# --- what twilio-video really sends ----------------------------------------------------------

@pytest.mark.parametrize("capture", CAPTURES)
def test_every_captured_client_body_parses(capture: str) -> None:
    bodies = client_bodies(capture)
    assert bodies
    for body in bodies:
        message = rsp.parse_client_message(body)
        assert body["type"] == message.TYPE


@pytest.mark.parametrize("capture", CAPTURES)
def test_client_bodies_survive_a_round_trip(capture: str) -> None:
    for body in client_bodies(capture):
        message = rsp.parse_client_message(body)
        assert rsp.parse_client_message(message.to_dict()) == message


def test_connect_carries_token_tracks_and_the_initial_offer() -> None:
    connect = rsp.parse_client_message(first("capture_join.json", "connect"))
    assert isinstance(connect, rsp.Connect)
    assert connect.name == "lab"
    assert connect.token.count(".") == 2
    assert [t.kind for t in connect.participant.tracks] == ["audio", "video", "data"]
    assert connect.ice_servers == "overrode"
    assert connect.format == "unified"
    assert connect.subscribe == {"rules": [{"type": "include", "all": True}], "revision": 1}
    (pc,) = connect.peer_connections
    assert pc.description is not None
    assert (pc.description.type, pc.description.revision) == ("offer", 1)
    assert pc.description.sdp is not None and pc.description.sdp.startswith("v=0")


def test_connect_asks_for_the_media_signaling_channels_it_was_given() -> None:
    connect = rsp.parse_client_message(first("capture_media_signaling.json", "connect"))
    assert isinstance(connect, rsp.Connect)
    assert set(connect.media_signaling) == {"active_speaker", "network_quality"}


def test_published_track_ids_are_the_msid_track_ids_of_the_offer() -> None:
    connect = rsp.parse_client_message(first("capture_join.json", "connect"))
    assert isinstance(connect, rsp.Connect)
    sdp = connect.peer_connections[0].description.sdp  # type: ignore[union-attr]
    assert sdp is not None
    for track in connect.participant.tracks:
        if track.kind != "data":
            assert f" {track.id}\r\n" in sdp


def test_trickled_ice_is_cumulative_per_ufrag() -> None:
    updates = [rsp.parse_client_message(b) for b in client_bodies("capture_join.json")]
    ice = [pc.ice for u in updates if isinstance(u, rsp.Update)
           for pc in u.peer_connections or [] if pc.ice]
    assert len(ice) >= 2
    assert [i.revision for i in ice] == sorted(i.revision for i in ice)
    assert len(ice[-1].candidates) >= len(ice[0].candidates)
    assert ice[-1].complete


def test_sync_reuses_the_session_of_connected() -> None:
    sync = rsp.parse_client_message(first("capture_reconnect.json", "sync"))
    connected = next(r["frame"]["body"] for r in frames("capture_reconnect.json")
                     if r["dir"] == "out" and r["frame"].get("body", {}).get("type") == "connected")
    assert isinstance(sync, rsp.Sync)
    assert sync.session == connected["session"]


def test_disconnect_before_connected_has_no_session() -> None:
    disconnect = rsp.parse_client_message(first("capture_error.json", "disconnect"))
    assert disconnect == rsp.Disconnect(session=None)


# --- malformed client bodies -----------------------------------------------------------------

def broken(mutate: Any) -> dict[str, Any]:
    body = first("capture_join.json", "connect")
    mutate(body)
    return body


@pytest.mark.parametrize(("mutate", "where"), [
    (lambda b: b.pop("token"), "connect.token: missing"),
    (lambda b: b.update(token=7), "connect.token: expected string, got int"),
    (lambda b: b.update(version=3), "connect.version: unsupported RSP version 3"),
    (lambda b: b["participant"].pop("revision"), "connect.participant.revision: missing"),
    (lambda b: b["participant"].update(revision=-1), "non-negative"),
    (lambda b: b["participant"]["tracks"][1].update(kind="screen"),
     "connect.participant.tracks[1].kind: expected one of audio, data, video, got 'screen'"),
    (lambda b: b["participant"]["tracks"][0].update(enabled="yes"),
     "connect.participant.tracks[0].enabled: expected boolean, got string"),
    (lambda b: b["participant"]["tracks"][0].update(priority="urgent"),
     "connect.participant.tracks[0].priority"),
    (lambda b: b["peer_connections"][0]["description"].pop("sdp"),
     "connect.peer_connections[0].description.sdp: missing"),
    (lambda b: b["peer_connections"][0]["description"].update(type="bogus"),
     "connect.peer_connections[0].description.type"),
    (lambda b: b["peer_connections"][0]["description"].update(revision=True),
     "connect.peer_connections[0].description.revision: expected integer, got boolean"),
    (lambda b: b.update(peer_connections={}), "connect.peer_connections: expected array"),
    (lambda b: b["peer_connections"].append("pc"),
     "connect.peer_connections[1]: expected an object, got string"),
])
def test_malformed_connect_is_rejected_with_53004_naming_the_field(mutate: Any,
                                                                  where: str) -> None:
    with pytest.raises(SignalingError) as info:
        rsp.parse_client_message(broken(mutate))
    assert info.value.code == 53004
    assert where in info.value.message


@pytest.mark.parametrize(("body", "problem"), [
    ([], "must be an object"),
    ({"version": 2}, "no string 'type'"),
    ({"type": "connected"}, "unknown client message type 'connected'"),
    ({"type": "update", "version": 2}, "update.session: missing"),
    ({"type": "update", "session": "s", "peer_connections": [{"ice": {}}]},
     "update.peer_connections[0].id: missing"),
    ({"type": "update", "session": "s",
      "peer_connections": [{"id": "p", "ice": {"ufrag": "u", "revision": 1,
                                               "candidates": [{"sdpMid": "0"}]}}]},
     "update.peer_connections[0].ice.candidates[0].candidate: missing"),
])
def test_malformed_bodies_name_what_is_wrong(body: Any, problem: str) -> None:
    with pytest.raises(SignalingError) as info:
        rsp.parse_client_message(body)
    assert info.value.code == 53004
    assert problem in info.value.message


def test_ice_state_without_candidates_is_accepted_as_empty() -> None:
    # icebox.js: "The Server sometimes does not set the candidates property."
    update = rsp.parse_client_message({"type": "update", "session": "s", "peer_connections": [
        {"id": "p", "ice": {"ufrag": "u", "revision": 1, "complete": True}}]})
    assert isinstance(update, rsp.Update) and update.peer_connections
    assert update.peer_connections[0].ice == rsp.IceState(ufrag="u", revision=1, complete=True)


# --- server messages -------------------------------------------------------------------------

def test_connected_builds_what_connect_needs_to_resolve() -> None:
    connected = rsp.Connected(
        session="S1", sid="RM1", name="lab", participant=rsp.ParticipantRef("PA1", "alice"),
        peer_connections=[rsp.PeerConnectionState(
            "pc1", description=rsp.Description("answer", 1, "v=0\r\n"))],
        published=rsp.Published(1, [rsp.PublishedTrack("t1", "ready", sid="MT1")]),
        subscribed=rsp.Subscribed(1, []), recording=rsp.Recording(False, 1),
        participants=[], media_signaling={"active_speaker": "as-1"})
    body = connected.to_dict()
    assert body["type"] == "connected"
    assert body["participant"] == {"sid": "PA1", "identity": "alice"}
    assert body["options"] == {"session_timeout": 30}
    assert body["media_signaling"] == {
        "active_speaker": {"transport": {"type": "data-channel", "label": "as-1"}}}
    assert body["peer_connections"] == [
        {"id": "pc1", "description": {"type": "answer", "revision": 1, "sdp": "v=0\r\n"}}]
    assert rsp.parse_server_message(body) == connected


def test_server_builders_match_what_the_client_reacts_to() -> None:
    assert rsp.Disconnected().to_dict() == {"type": "disconnected", "status": "completed"}
    assert rsp.Error(53205, "dup").to_dict() == {"type": "error", "code": 53205,
                                                 "message": "dup"}
    update = rsp.ServerUpdate(peer_connections=[rsp.PeerConnectionState(
        "pc1", description=rsp.Description("create-offer", 3))])
    assert update.to_dict() == {"type": "update", "peer_connections": [
        {"id": "pc1", "description": {"type": "create-offer", "revision": 3}}]}
    assert rsp.Synced(participants=[]).to_dict() == {"type": "synced", "participants": []}


def test_error_from_a_video_error_keeps_its_code() -> None:
    error = rsp.Error.from_exception(SignalingError(53002))
    assert (error.code, error.message) == (53002, "Signaling connection timed out")


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_captured_server_body_parses(capture: str) -> None:
    for row in frames(capture):
        if row["dir"] == "out" and row["frame"]["type"] == "msg":
            message = rsp.parse_server_message(row["frame"]["body"])
            assert row["frame"]["body"]["type"] == message.TYPE


@pytest.mark.parametrize(("body", "problem"), [
    ({"type": "connected", "session": "s", "sid": "RM", "name": "n",
      "options": {"session_timeout": 30}}, "connected.participant: missing"),
    ({"type": "connected", "session": "s", "sid": "RM", "name": "n",
      "participant": {"sid": "PA", "identity": "a"}}, "connected.options: missing"),
    ({"type": "update", "participants": [{"sid": "PA", "identity": "b", "revision": 1,
                                          "state": "connected"}]},
     "update.participants[0].tracks: missing"),
    ({"type": "update", "published": {"revision": 1, "tracks": [{"id": "t", "state": "ready"}]}},
     "update.published.tracks[0].sid: missing"),
    ({"type": "update", "media_signaling": {"active_speaker": {"transport": {"type": "ws"}}}},
     "update.media_signaling.active_speaker.transport.type"),
    ({"type": "error", "message": "x"}, "error.code: missing"),
])
def test_malformed_server_bodies_are_rejected_with_53003(body: Any, problem: str) -> None:
    with pytest.raises(SignalingError) as info:
        rsp.parse_server_message(body)
    assert info.value.code == 53003
    assert problem in info.value.message


# --- revisions -------------------------------------------------------------------------------

def test_revision_only_grows() -> None:
    revision = rsp.Revision()
    assert [revision.next(), revision.next()] == [1, 2]
    assert revision.advance_to(1) == 2
    assert revision.advance_to(7) == 7
    assert revision.next() == 8


def test_revision_filter_accepts_only_newer_revisions_per_key() -> None:
    seen = rsp.RevisionFilter()
    assert seen.accept("participant", 4)
    assert not seen.accept("participant", 4)  # repeated on every ICE-only update
    assert not seen.accept("participant", 3)
    assert seen.accept(("pc", "p1"), 1)
    assert seen.accept("participant", 5)
    assert seen.latest("participant") == 5
    assert seen.latest("nothing") is None


def test_captured_participant_revisions_never_go_down() -> None:
    seen = rsp.RevisionFilter()
    accepted = []
    for body in client_bodies("capture_join.json"):
        message = rsp.parse_client_message(body)
        participant = getattr(message, "participant", None)
        if participant is not None and seen.accept("participant", participant.revision):
            accepted.append(participant.revision)
    assert accepted == sorted(set(accepted))
    assert len(accepted) >= 4  # join, publish video, publish data, mute, unpublish


def _without_unmodelled(body: dict[str, Any]) -> dict[str, Any]:
    """A captured server body minus what rsp does not model (never read by the client)."""
    body = copy.deepcopy(body)
    body.pop("version", None)  # twilio-video never reads a server message's version
    if "participant" in body:  # room.js _update reads only sid and identity
        body["participant"] = {k: body["participant"][k] for k in ("sid", "identity")}
    return body


@pytest.mark.parametrize("capture", CAPTURES)
def test_builders_reproduce_the_server_bodies_the_real_client_accepted(capture: str) -> None:
    for row in frames(capture):
        if row["dir"] == "out" and row["frame"]["type"] == "msg":
            body = row["frame"]["body"]
            rebuilt = rsp.parse_server_message(body).to_dict()
            assert rebuilt == _without_unmodelled(body)
