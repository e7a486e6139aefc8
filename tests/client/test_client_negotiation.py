"""Description revisions (docs/signaling.md section 5), against a real aiortc peer as server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from jupyter_video.client.peer_connection import Negotiation, PeerConnection, track_ids_by_mid
from jupyter_video.client.track import LocalDataTrack, LocalVideoTrack
from jupyter_video.signaling import rsp


@pytest.fixture
async def pair() -> AsyncIterator[tuple[PeerConnection, RTCPeerConnection]]:
    client = PeerConnection(lambda channel: None)
    server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    yield client, server
    await client.close()
    await server.close()


def video() -> LocalVideoTrack:
    return LocalVideoTrack.from_frames(np.zeros((16, 16, 3), np.uint8) for _ in range(10))


async def answer(server: RTCPeerConnection, offer: rsp.Description,
                 revision: int | None = None) -> rsp.Description:
    assert offer.sdp is not None
    await server.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
    await server.setLocalDescription(await server.createAnswer())
    return rsp.Description("answer", offer.revision if revision is None else revision,
                           server.localDescription.sdp)


async def test_first_offer_has_revision_1_and_carries_the_track_id_in_msid(pair) -> None:
    client, _ = pair
    track = video()
    client.add_track(track)
    client.receive_audio_and_video()
    offer = await client.offer()
    assert (offer.type, offer.revision) == ("offer", 1)
    assert offer.sdp is not None
    assert track.id in track_ids_by_mid(offer.sdp).values()
    assert "m=audio" in offer.sdp  # offers to receive audio with nothing to send
    assert client.negotiation is Negotiation.AWAITING_ANSWER


async def test_an_answer_with_another_revision_is_ignored(pair) -> None:
    client, server = pair
    client.receive_audio_and_video()
    offer = await client.offer()
    wrong = await answer(server, offer, revision=offer.revision + 1)
    assert await client.apply(wrong) == []
    assert client.negotiation is Negotiation.AWAITING_ANSWER
    right = rsp.Description("answer", offer.revision, wrong.sdp)
    assert await client.apply(right) == []
    assert client.negotiation is Negotiation.STABLE
    assert client.last_stable_revision == 1


async def test_create_offer_n_makes_an_offer_n_plus_1(pair) -> None:
    client, server = pair
    client.receive_audio_and_video()
    await client.apply(await answer(server, await client.offer()))
    [offer] = await client.apply(rsp.Description("create-offer", 3))
    assert (offer.type, offer.revision) == ("offer", 4)
    assert await client.apply(await answer(server, offer)) == []
    assert client.last_stable_revision == 4


async def test_a_server_offer_is_answered_with_its_revision_and_stale_ones_are_dropped(
        pair) -> None:
    client, server = pair
    client.receive_audio_and_video()
    await client.apply(await answer(server, await client.offer()))
    sender = VideoStreamTrack()
    server.addTrack(sender)
    await server.setLocalDescription(await server.createOffer())
    stale = rsp.Description("offer", 1, server.localDescription.sdp)
    assert await client.apply(stale) == []
    [reply] = await client.apply(rsp.Description("offer", 2, server.localDescription.sdp))
    assert (reply.type, reply.revision) == ("answer", 2)
    assert client.remote_track_ids()["1"] == sender.id  # mid 1: the video section


async def test_create_offer_while_an_offer_is_out_waits_for_the_answer(pair) -> None:
    client, server = pair
    client.receive_audio_and_video()
    await client.apply(await answer(server, await client.offer()))
    client.add_track(video())
    [offer] = await client.renegotiate()
    assert offer.revision == 2
    assert await client.apply(rsp.Description("create-offer", 5)) == []
    [queued] = await client.apply(await answer(server, offer))
    assert (queued.type, queued.revision) == ("offer", 6)


async def test_a_track_added_while_awaiting_an_answer_is_offered_after_it(pair) -> None:
    client, server = pair
    client.receive_audio_and_video()
    first = await client.offer()
    client.add_track(video())
    assert await client.renegotiate() == []  # queued: an offer is out
    [second] = await client.apply(await answer(server, first))
    assert (second.type, second.revision) == ("offer", 2)


async def test_a_data_track_without_m_application_asks_for_an_offer(pair) -> None:
    client, server = pair
    client.receive_audio_and_video()
    await client.apply(await answer(server, await client.offer()))
    track = LocalDataTrack()
    client.add_data_track(track)
    [offer] = await client.renegotiate()
    assert offer.sdp is not None and "m=application" in offer.sdp


async def test_a_republished_track_gets_a_new_m_section_not_the_one_it_left(pair) -> None:
    client, server = pair
    client.receive_audio_and_video()  # a recvonly video transceiver: the first track takes it
    first = video()
    used = client.add_track(first)
    await client.apply(await answer(server, await client.offer()))
    client.remove_track(first)
    assert used.direction == "recvonly" and used.sender.track is None
    second = video()
    assert client.add_track(second) is not used
    [offer] = await client.renegotiate()
    assert offer.sdp is not None
    assert track_ids_by_mid(offer.sdp).get(used.mid) != second.id
    assert second.id in track_ids_by_mid(offer.sdp).values()


async def test_glare_the_server_offer_wins_and_ours_is_offered_again(pair) -> None:
    """The server ignores our offer when its own crosses it (live.py); twilio-video
    rolls back, answers, and offers again: so do we, without a rollback in aiortc."""
    client, server = pair
    client.add_track(video())
    await client.apply(await answer(server, await client.offer()))  # mid 0: video
    # We publish a second video while the server offers us an audio subscription.
    published = video()
    ours = client.add_track(published)
    assert ours.mid is None
    [crossed] = await client.renegotiate()
    assert crossed.revision == 2 and crossed.sdp is not None
    assert published.id in track_ids_by_mid(crossed.sdp).values()
    subscription = AudioStreamTrack()
    server.addTransceiver(subscription, direction="sendonly")
    await server.setLocalDescription(await server.createOffer())
    theirs = rsp.Description("offer", 2, server.localDescription.sdp)

    reply, again = await client.apply(theirs)
    assert (reply.type, reply.revision) == ("answer", 2)
    assert (again.type, again.revision) == ("offer", 3)
    assert client.negotiation is Negotiation.AWAITING_ANSWER
    # The server's audio got a receiving transceiver of its own; our second video is
    # in none of the answer's sections (aiortc would have given it mid 1).
    assert reply.sdp is not None and published.id not in track_ids_by_mid(reply.sdp).values()
    assert client.remote_track_ids()["1"] == subscription.id
    assert ours.mid is None
    await server.setRemoteDescription(RTCSessionDescription(reply.sdp, "answer"))

    assert again.sdp is not None
    assert track_ids_by_mid(again.sdp)["2"] == published.id
    received: list[str] = []
    server.on("track", lambda track: received.append(track.kind))
    assert await client.apply(await answer(server, again)) == []
    assert client.negotiation is Negotiation.STABLE and client.last_stable_revision == 3
    assert ours.mid == "2" and ours.currentDirection == "sendonly"  # server sends nothing
    assert received == ["video"]  # our second video reaches the server on its own section


async def test_an_offer_crossing_our_first_one_waits_for_its_answer(pair) -> None:
    client, server = pair
    client.receive_audio_and_video()
    first = await client.offer()
    assert first.sdp is not None and "a=candidate:" in first.sdp  # applied: gathered
    first_answer = await answer(server, first)
    server.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await server.setLocalDescription(await server.createOffer())
    early = rsp.Description("offer", 2, server.localDescription.sdp)
    assert await client.apply(early) == []  # no glare handling before the first answer
    [reply] = await client.apply(first_answer)
    assert (reply.type, reply.revision) == ("answer", 2)
