"""The peer-to-peer relay on its own: how a room's pairs are opened, identified and
closed, how glare is resolved, and that no command about these rooms reaches the media
plane (a real in-process one, whose own counters say what it was asked to hold)."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_video.errors import VideoError
from jupyter_video.server.peer_to_peer import GroupMediaPlane, Mesh
from jupyter_video.sfu import LocalMediaPlane
from jupyter_video.signaling import rsp

from ..client.participants import LOOPBACK


class Peer:
    """A participant's end of the relay: what the server sent it, as twilio-video gets it."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.bodies: list[dict[str, Any]] = []

    def send(self, body: dict[str, Any]) -> None:
        self.bodies.append(body)

    def received(self) -> list[tuple[str, str, int]]:
        """(pair id, description type, revision) of every description, in order."""
        return [(pc["id"], pc["description"]["type"], pc["description"]["revision"])
                for body in self.bodies for pc in body.get("peer_connections", [])
                if "description" in pc]

    def take(self) -> list[tuple[str, str, int]]:
        received = self.received()
        self.bodies.clear()
        return received


def offer(pc_id: str, revision: int) -> rsp.PeerConnectionState:
    return rsp.PeerConnectionState(pc_id, rsp.Description("offer", revision, f"sdp {revision}"))


def answer(pc_id: str, revision: int) -> rsp.PeerConnectionState:
    return rsp.PeerConnectionState(pc_id, rsp.Description("answer", revision, f"sdp {revision}"))


def test_the_first_participant_alone_has_its_offer_closed() -> None:
    mesh, ann = Mesh(), Peer("PA-ann")
    mesh.join(ann, [offer("ann-first", 1)])
    assert ann.take() == [("ann-first", "close", 2)]
    assert mesh.pairs == {}


def test_a_newcomer_pairs_with_everyone_under_ids_both_ends_share() -> None:
    mesh = Mesh()
    ann, ben, cat = Peer("PA-ann"), Peer("PA-ben"), Peer("PA-cat")
    mesh.join(ann, [offer("ann-first", 1)])
    mesh.join(ben, [offer("ben-first", 1)])
    # ben's own first offer opens the pair with ann, under ben's id
    assert ann.received()[-1] == ("ben-first", "offer", 1)
    mesh.relay(ann, answer("ben-first", 1))
    assert ben.take() == [("ben-first", "answer", 1)]
    ann.take()

    mesh.join(cat, [offer("cat-first", 1)])
    assert ann.take() == [("cat-first", "offer", 1)]  # with the one who joined first
    [(pair_id, kind, revision)] = cat.take()  # and asked to offer for ben
    assert (kind, revision) == ("create-offer", 1) and pair_id.startswith("PC")
    mesh.relay(cat, offer(pair_id, 2))
    assert ben.take() == [(pair_id, "offer", 2)]
    assert sorted(p.ends for p in mesh.pairs.values()) == [
        ("PA-ben", "PA-ann"), ("PA-cat", "PA-ann"), ("PA-cat", "PA-ben")]
    assert {s.id for s in mesh.states_for("PA-cat")} == {"cat-first", pair_id}


def test_glare_is_won_by_the_offer_the_server_had_first() -> None:
    mesh, ann, ben = Mesh(), Peer("PA-ann"), Peer("PA-ben")
    mesh.join(ann, [offer("x", 1)])
    mesh.join(ben, [offer("pair", 1)])
    mesh.relay(ann, answer("pair", 1))
    ann.take(), ben.take()

    mesh.relay(ann, offer("pair", 2))  # both publish at once: ann's offer comes first
    mesh.relay(ben, offer("pair", 2))
    assert ben.take() == [("pair", "offer", 2)]
    assert ann.take() == []  # ben's is dropped; twilio-video rolls it back
    mesh.relay(ben, answer("pair", 2))  # ben answers ann's offer ...
    mesh.relay(ben, offer("pair", 3))  # ... and offers its change again
    assert ann.take() == [("pair", "answer", 2), ("pair", "offer", 3)]
    mesh.relay(ann, answer("pair", 3))
    assert ben.take() == [("pair", "answer", 3)]


def test_an_answer_nobody_waits_for_goes_nowhere() -> None:
    mesh, ann, ben = Mesh(), Peer("PA-ann"), Peer("PA-ben")
    mesh.join(ann, [offer("x", 1)])
    mesh.join(ben, [offer("pair", 1)])
    ann.take()
    mesh.relay(ben, answer("pair", 1))  # the offerer cannot answer itself
    assert ann.take() == []
    mesh.relay(ann, answer("pair", 1))
    mesh.relay(ann, answer("pair", 1))  # repeated: the pair is stable already
    assert ben.take() == [("pair", "answer", 1)]


def test_descriptions_repeated_by_a_reconnecting_client_are_not_relayed_again() -> None:
    mesh, ann, ben = Mesh(), Peer("PA-ann"), Peer("PA-ben")
    mesh.join(ann, [offer("x", 1)])
    mesh.join(ben, [offer("pair", 1)])
    mesh.relay(ann, answer("pair", 1))
    ann.take(), ben.take()
    mesh.relay(ben, offer("pair", 1))  # ben's sync repeats its answered offer
    mesh.relay(ann, answer("pair", 1))  # and ann's its answer
    assert ann.take() == [] and ben.take() == []
    mesh.relay(ann, offer("pair", 2))  # the pair goes on as before
    assert ben.take() == [("pair", "offer", 2)]
    assert [s.description for s in mesh.states_for("PA-ben")] == [
        rsp.Description("offer", 2, "sdp 2")]


def test_ice_candidates_go_to_the_other_end_under_the_pair_id() -> None:
    mesh, ann, ben = Mesh(), Peer("PA-ann"), Peer("PA-ben")
    mesh.join(ann, [offer("x", 1)])
    mesh.join(ben, [offer("pair", 1)])
    ann.bodies.clear()
    ice = rsp.IceState("ufrag", 1, [rsp.IceCandidate("candidate:1 1 udp 1 127.0.0.1 9 typ host")])
    mesh.relay(ben, rsp.PeerConnectionState("pair", ice=ice))
    [body] = ann.bodies
    assert body["peer_connections"] == [{"id": "pair", "ice": ice.to_dict()}]
    mesh.relay(ben, rsp.PeerConnectionState("unknown", ice=ice))  # a closed pair: dropped
    assert len(ann.bodies) == 1


def test_leaving_closes_only_the_leavers_pairs_at_their_other_ends() -> None:
    mesh = Mesh()
    ann, ben, cat = Peer("PA-ann"), Peer("PA-ben"), Peer("PA-cat")
    for peer in (ann, ben, cat):
        mesh.join(peer, [offer(f"{peer.sid}-first", 1)])
    cat_pairs = {pair.id for pair in mesh.pairs_of("PA-cat")}
    for peer in (ann, ben, cat):
        peer.take()
    mesh.leave("PA-cat")
    closed = [(pc_id, kind) for pc_id, kind, _ in ann.take() + ben.take()]
    assert sorted(closed) == sorted((pc_id, "close") for pc_id in cat_pairs)
    assert [pair.ends for pair in mesh.pairs.values()] == [("PA-ben", "PA-ann")]
    assert cat.take() == []


async def test_no_command_about_a_peer_to_peer_room_reaches_the_media_plane() -> None:
    sfu = LocalMediaPlane(LOOPBACK)
    media = GroupMediaPlane(sfu, lambda room_sid: room_sid == "RM-p2p")
    await media.start()
    try:
        await media.add_peer("PA-ann", "RM-p2p")
        await media.bind_publication("PA-ann", "track-1", "MT-1", "video")
        await media.add_peer("PA-ben", "RM-p2p")
        assert await media.subscribe("PA-ben", "MT-1") is False  # no offer: nothing changes
        await media.set_enabled("PA-ann", "MT-1", False)
        with pytest.raises(VideoError) as refused:
            await media.start_recording("PA-ann", "MT-1", "RT-1", "/tmp/never.mka")
        assert refused.value.code == 53114
        [stats] = await media.stats()
        assert (stats.rooms, stats.peers, stats.publications, stats.subscriptions) == (0, 0, 0, 0)
        await media.remove_peer("PA-ann")
        await media.close_room("RM-p2p")

        await media.add_peer("PA-cat", "RM-group")  # a group room's participant does reach it
        [stats] = await media.stats()
        assert (stats.rooms, stats.peers) == (1, 1)
    finally:
        await media.close()
