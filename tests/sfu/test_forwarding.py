"""The SFU forwards encoded media between real aiortc peers, in-process and in a worker."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from jupyter_video import _aiortc as adapter
from jupyter_video.sfu.interface import (
    ConnectionStateChanged,
    DominantSpeakerChanged,
    MediaPlane,
    PeerState,
    RenegotiationNeeded,
    TrackReceived,
)
from jupyter_video.sfu.rtp.codecs import vp8_keyframe

from .peers import (
    HEIGHT,
    ROOM,
    WIDTH,
    Client,
    PatternTrack,
    ToneTrack,
    next_frame,
    pattern_error,
    read_index,
    wait_for_event,
)

MAX_PATTERN_ERROR = 8.0  # mean absolute difference per channel, 0..255


async def receive_pattern(track: object, frames: int) -> list[int]:
    """Receive ``frames`` video frames, check each against the pattern, return their indices."""
    indices = []
    for _ in range(frames):
        frame = await next_frame(track)  # type: ignore[arg-type]
        assert (frame.width, frame.height) == (WIDTH, HEIGHT)
        image = frame.to_ndarray(format="rgb24")
        assert pattern_error(image) < MAX_PATTERN_ERROR
        indices.append(read_index(image))
    return indices


async def publish_video(publisher: Client, codec: str | None = None) -> str:
    await publisher.join()
    [track_sid] = await publisher.publish(PatternTrack(), codec=codec)
    return track_sid


async def test_subscriber_receives_the_published_video_frame_for_frame(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    track_sid = await publish_video(publisher)
    event = await wait_for_event(plane, lambda e: isinstance(e, TrackReceived))
    assert isinstance(event, TrackReceived)
    assert (event.participant_sid, event.kind, event.codec) == (publisher.sid, "video", "video/VP8")
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)

    indices = await receive_pattern(track, 45)

    # Consecutive frames of the pattern, in order, none missing.
    assert indices == list(range(indices[0], indices[0] + 45))
    await wait_for_event(
        plane,
        lambda e: isinstance(e, ConnectionStateChanged)
        and e.participant_sid == subscriber.sid
        and e.state == PeerState.CONNECTED,
    )


async def test_h264_is_forwarded_without_transcoding(plane: MediaPlane, clients) -> None:
    publisher, subscriber = clients(1), clients(2)
    track_sid = await publish_video(publisher, codec="video/H264")
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)

    indices = await receive_pattern(track, 20)

    assert indices == list(range(indices[0], indices[0] + 20))
    receiver = next(t.receiver for t in subscriber.pc.getTransceivers())
    codecs = adapter.negotiated_codecs(next(iter(subscriber.pc.getTransceivers())))
    assert codecs[0].mimeType == "video/H264", receiver


async def test_opus_audio_is_forwarded_and_its_level_names_the_dominant_speaker(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    await publisher.join()
    [track_sid] = await publisher.publish(ToneTrack(440.0))
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)

    samples = []
    for _ in range(60):  # 1.2 s of 20 ms frames
        frame = await next_frame(track)
        channels = len(frame.layout.channels)
        samples.append(frame.to_ndarray().reshape(-1)[::channels])
        rate = frame.sample_rate
    audio = np.concatenate(samples[10:]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(audio))
    peak = np.fft.rfftfreq(len(audio), 1 / rate)[int(np.argmax(spectrum))]
    assert abs(peak - 440.0) < 5.0

    event = await wait_for_event(plane, lambda e: isinstance(e, DominantSpeakerChanged))
    assert event == DominantSpeakerChanged(ROOM, publisher.sid)


async def test_data_channel_messages_are_relayed_in_order(plane: MediaPlane, clients) -> None:
    publisher, subscriber = clients(1), clients(2)
    await publisher.join()
    track_sid, channel = await publisher.publish_data("chat-track-id")
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    received: asyncio.Queue[str] = asyncio.Queue()
    relayed = await asyncio.wait_for(subscriber.channels.get(), 10)
    relayed.on("message", received.put_nowait)
    assert relayed.label == "chat-track-id"
    assert (relayed.ordered, relayed.maxRetransmits) == (True, None)

    for i in range(200):
        channel.send(f"message {i}")
    messages = [await asyncio.wait_for(received.get(), 10) for _ in range(200)]

    assert messages == [f"message {i}" for i in range(200)]


async def test_subscriber_joining_late_starts_on_a_keyframe(
    plane: MediaPlane, clients, caplog: pytest.LogCaptureFixture
) -> None:
    publisher, early, late = clients(1), clients(2), clients(3)
    track_sid = await publish_video(publisher)
    await early.join()
    await early.subscribe(track_sid)
    early_track = await asyncio.wait_for(early.tracks.get(), 10)
    await receive_pattern(early_track, 40)  # well past the publisher's first keyframe

    with caplog.at_level(logging.WARNING, logger="aiortc"):
        await late.join()
        await late.subscribe(track_sid)
        late_track = await asyncio.wait_for(late.tracks.get(), 10)
        await receive_pattern(late_track, 10)

    assert late.keyframes[0] is True
    assert vp8_keyframe(late.rtp_of("video")[0].payload)  # its very first packet
    assert not [r for r in caplog.records if "failed to decode" in r.getMessage()]


async def test_subscriber_pli_reaches_the_publisher_at_most_once_per_second(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    track_sid = await publish_video(publisher)
    requests: list[float] = []
    sender = publisher.pc.getTransceivers()[0].sender
    adapter.on_keyframe_request(sender, lambda: requests.append(time.monotonic()))
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)
    await receive_pattern(track, 5)
    receiver = subscriber.pc.getTransceivers()[0].receiver

    await asyncio.sleep(1.1)
    requests.clear()
    start = time.monotonic()
    while time.monotonic() - start < 3.0:  # 20 PLIs a second from the subscriber
        assert await adapter.send_pli(receiver)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)

    assert 2 <= len(requests) <= 4
    gaps = np.diff(requests)
    assert (gaps > 0.9).all()


def resumed(before: list[int], after: list[int], run: int = 10) -> list[int]:
    """The frames a subscriber decoded once forwarding resumed: ``run`` consecutive
    ones, after those it still had from before the pause. The client's jitter
    buffer lets go of the frame it held only at the next packet, and frames
    decoded before the pause but not yet read come first too (one to a few, as
    the machine's load falls)."""
    start = next(
        (i for i in range(8) if after[i:i + run] == list(range(after[i], after[i] + run))), None
    )
    assert start is not None, (before, after)
    assert all(before[-1] < index < after[start] for index in after[:start]), (before, after)
    return after[start:start + run]


async def test_unsubscribe_stops_frames_and_resubscribe_brings_them_back(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    track_sid = await publish_video(publisher)
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)
    before = await receive_pattern(track, 10)

    assert await plane.unsubscribe(subscriber.sid, track_sid) is True
    await subscriber.answer()
    assert subscriber.pc.getTransceivers()[0].currentDirection == "inactive"
    await until_the_sfu_received(plane, 5)  # what was in flight has landed
    unsubscribed = len(subscriber.rtp_of("video"))
    await until_the_sfu_received(plane, 40)  # the publisher goes on; nothing comes here
    assert len(subscriber.rtp_of("video")) == unsubscribed

    assert await plane.subscribe(subscriber.sid, track_sid) is True
    await subscriber.answer()
    after = resumed(before, await receive_pattern(track, 18))
    assert after[0] > before[-1] + 10
    received = subscriber.rtp_of("video")
    assert vp8_keyframe(received[unsubscribed].payload)
    assert continuous(received)  # the same slot: its numbering runs on
    assert len(subscriber.pc.getTransceivers()) == 1  # the transceiver was reused


async def test_the_sfu_never_creates_a_decoder_or_an_encoder(plane: MediaPlane, clients) -> None:
    publisher, subscriber = clients(1), clients(2)
    await publisher.join()
    track_sids = await publisher.publish(PatternTrack(), ToneTrack())
    await subscriber.join()
    for track_sid in track_sids:
        assert await plane.subscribe(subscriber.sid, track_sid)
    await subscriber.answer()
    tracks = [await asyncio.wait_for(subscriber.tracks.get(), 10) for _ in track_sids]
    for track in tracks:  # the subscriber decodes both
        await next_frame(track)

    [stats] = await plane.stats()
    assert stats.frames_forwarded > 0
    if stats.pid == __import__("os").getpid():
        # In-process the clients' own codecs count too: look at the SFU's objects.
        # aiortc never started one of its receivers or senders: nothing could decode.
        room = plane.rooms[ROOM]  # type: ignore[attr-defined]
        for peer in room.peers.values():
            for transceiver in peer.pc.getTransceivers():
                assert not adapter.started(transceiver.receiver)
                assert not adapter.started(transceiver.sender)
    else:
        assert (stats.decoders_created, stats.encoders_created) == (0, 0)


async def test_media_workers_run_on_uvloop_and_the_in_process_plane_on_the_callers_loop(
    plane: MediaPlane,
) -> None:
    [stats] = await plane.stats()
    in_process = stats.pid == os.getpid()
    assert stats.event_loop == ("asyncio" if in_process else "uvloop")


async def test_a_subscribers_nack_is_answered_by_rtx_from_what_the_sfu_sent(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    track_sid = await publish_video(publisher)
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)
    await receive_pattern(track, 10)
    [receiving] = subscriber.pc.getTransceivers()
    rtx_types = {c.payloadType for c in receiving._codecs if c.mimeType.lower() == "video/rtx"}
    assert rtx_types  # negotiated by default between aiortc peers
    sent = subscriber.rtp_of("video")[-5:-2]
    before = sum(s.retransmissions_sent for s in await plane.stats())
    nacks = sum(s.nacks_received for s in await plane.stats())

    lost = [p.sequence_number for p in sent]
    await receiving.receiver._send_rtcp_nack(sent[0].ssrc, lost)  # as if they were lost
    deadline = time.monotonic() + 5
    while len([p for p in subscriber.rtp if p.payload_type in rtx_types]) < 3:
        assert time.monotonic() < deadline, "no RTX came"
        await asyncio.sleep(0.02)

    rtx = [p for p in subscriber.rtp if p.payload_type in rtx_types]
    assert [int.from_bytes(p.payload[:2], "big") for p in rtx] == lost  # RFC 4588 OSN
    assert [p.payload[2:] for p in rtx] == [p.payload for p in sent]
    assert len({p.ssrc for p in rtx}) == 1 and rtx[0].ssrc != sent[0].ssrc
    stats = await plane.stats()
    assert sum(s.retransmissions_sent for s in stats) == before + 3
    assert sum(s.nacks_received for s in stats) == nacks + 3


async def test_a_media_worker_that_dies_is_reported_and_replaced(
    plane: MediaPlane, clients
) -> None:
    pids = getattr(plane, "worker_pids", None)
    if not pids:
        pytest.skip("in-process media plane has no worker")
    publisher = clients(1)
    await publisher.join()

    import os
    import signal

    os.kill(pids[0], signal.SIGKILL)
    event = await wait_for_event(plane, lambda e: type(e).__name__ == "WorkerExited")

    assert event.participant_sids == [publisher.sid]  # type: ignore[attr-defined]
    assert event.room_sids == [ROOM]  # type: ignore[attr-defined]
    with pytest.raises(Exception) as failure:
        await asyncio.wait_for(plane.remove_peer(publisher.sid), 5)
    assert getattr(failure.value, "code", None) in (53204, 53405)

    deadline = time.monotonic() + 10
    while plane.worker_pids == pids or not plane.workers[0].alive:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    newcomer, other = clients(3), clients(4)
    track_sid = await publish_video(newcomer)
    await other.join()
    await other.subscribe(track_sid)
    track = await asyncio.wait_for(other.tracks.get(), 10)
    await receive_pattern(track, 3)


async def test_removing_a_publisher_ends_its_subscribers_stream(plane: MediaPlane, clients) -> None:
    publisher, subscriber = clients(1), clients(2)
    track_sid = await publish_video(publisher)
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)
    await receive_pattern(track, 5)

    await plane.remove_peer(publisher.sid)

    [stats] = await plane.stats()
    assert (stats.peers, stats.publications) == (1, 0)
    with pytest.raises((asyncio.TimeoutError, MediaStreamError)):
        while True:
            await asyncio.wait_for(track.recv(), 0.7)


async def packets_received_by_the_sfu(plane: MediaPlane) -> int:
    return sum(s.packets_received for s in await plane.stats())


async def until_the_sfu_received(plane: MediaPlane, packets: int, timeout: float = 10) -> None:
    """Wait (on the SFU's own RTP counters, not the clock) for ``packets`` more."""
    target = await packets_received_by_the_sfu(plane) + packets
    deadline = time.monotonic() + timeout
    while await packets_received_by_the_sfu(plane) < target:
        assert time.monotonic() < deadline, f"the SFU did not receive {packets} packets"
        await asyncio.sleep(0.05)


def continuous(packets: list) -> bool:  # type: ignore[type-arg]
    """Sequence numbers that each follow the one before, timestamps that never go back."""
    return all(
        (b.sequence_number - a.sequence_number) & 0xFFFF == 1
        and (b.timestamp - a.timestamp) & 0xFFFFFFFF < 1 << 31
        for a, b in itertools.pairwise(packets)
    )


async def test_a_disabled_publication_is_not_forwarded_until_enabled_again(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    track_sid = await publish_video(publisher)
    await subscriber.join()
    await subscriber.subscribe(track_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)
    before = await receive_pattern(track, 5)

    await plane.set_enabled(publisher.sid, track_sid, False)
    await until_the_sfu_received(plane, 5)  # what was in flight has landed
    held_back = len(subscriber.rtp_of("video"))
    forwarded = sum(s.packets_forwarded for s in await plane.stats())
    await until_the_sfu_received(plane, 40)  # the publisher goes on sending
    assert len(subscriber.rtp_of("video")) == held_back
    assert sum(s.packets_forwarded for s in await plane.stats()) == forwarded

    await plane.set_enabled(publisher.sid, track_sid, True)
    after = resumed(before, await receive_pattern(track, 14), run=6)
    assert after[0] > before[-1] + 1
    received = subscriber.rtp_of("video")
    last, first = received[held_back - 1], received[held_back]
    assert vp8_keyframe(first.payload)  # resumed on a keyframe
    assert continuous(received)  # no gap for the subscriber to NACK, time runs on
    assert (first.timestamp - last.timestamp) & 0xFFFFFFFF > 90000 // 10  # the pause


async def test_a_subscribers_sequence_numbers_and_timestamps_run_on_across_republishing(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    first_sid = await publish_video(publisher)
    await subscriber.join()
    await subscriber.subscribe(first_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)
    await receive_pattern(track, 10)
    [slot_transceiver] = subscriber.pc.getTransceivers()

    await plane.unpublish(publisher.sid, first_sid)
    await subscriber.answer()
    before = len(subscriber.rtp_of("video"))
    second = PatternTrack()
    second.index = 128  # another picture: the frames tell which track they come from
    [transceiver] = publisher.pc.getTransceivers()
    transceiver.sender.replaceTrack(second)
    await publisher.offer()
    second_sid = "MT" + "3" * 32
    await plane.bind_publication(publisher.sid, second.id, second_sid, "video")
    await subscriber.subscribe(second_sid)
    assert subscriber.pc.getTransceivers() == [slot_transceiver]  # the same send slot
    indices = await receive_pattern(track, 10)
    assert indices[-1] >= 128

    received = subscriber.rtp_of("video")
    assert len(received) > before and len({p.ssrc for p in received}) == 1
    assert continuous(received)
    assert vp8_keyframe(received[before].payload)


async def test_subscribing_before_the_publishers_media_is_offered_once_it_arrives(
    plane: MediaPlane, clients
) -> None:
    publisher, subscriber = clients(1), clients(2)
    await publisher.join()
    await subscriber.join()
    track = PatternTrack()
    track_sid = "MT" + "7" * 32
    await plane.bind_publication(publisher.sid, track.id, track_sid, "video")

    assert await plane.subscribe(subscriber.sid, track_sid) is False  # nothing to offer yet
    publisher.pc.addTransceiver(track, direction="sendonly")
    await publisher.offer()
    await wait_for_event(
        plane,
        lambda e: isinstance(e, RenegotiationNeeded) and e.participant_sid == subscriber.sid,
    )
    await subscriber.answer()
    received = await asyncio.wait_for(subscriber.tracks.get(), 10)

    indices = await receive_pattern(received, 5)
    assert indices == list(range(indices[0], indices[0] + 5))


async def test_a_track_published_on_the_m_section_of_an_unpublished_one_is_forwarded(
    plane: MediaPlane, clients
) -> None:
    # twilio-video.js puts a new track on the m-section a removed track of the same
    # kind left (same mid, new a=msid); aiortc fires no new 'track' event for it.
    publisher, subscriber = clients(1), clients(2)
    first_sid = await publish_video(publisher)
    await plane.unpublish(publisher.sid, first_sid)
    second = PatternTrack()
    [transceiver] = publisher.pc.getTransceivers()
    transceiver.sender.replaceTrack(second)
    await publisher.offer()
    second_sid = "MT" + "2" * 32
    await plane.bind_publication(publisher.sid, second.id, second_sid, "video")
    event = await wait_for_event(
        plane, lambda e: isinstance(e, TrackReceived) and e.track_id == second.id
    )
    assert isinstance(event, TrackReceived) and event.mid == transceiver.mid
    await subscriber.join()
    await subscriber.subscribe(second_sid)
    track = await asyncio.wait_for(subscriber.tracks.get(), 10)
    indices = await receive_pattern(track, 10)
    assert indices == list(range(indices[0], indices[0] + 10))


async def test_a_subscriber_joining_soon_after_a_keyframe_starts_from_it_without_a_pli(
    plane: MediaPlane, clients
) -> None:
    publisher, first, second = clients(1), clients(2), clients(3)
    track_sid = await publish_video(publisher)
    await first.join()
    await first.subscribe(track_sid)
    await receive_pattern(await asyncio.wait_for(first.tracks.get(), 10), 3)
    [before] = await plane.stats()
    # The keyframe the first subscriber asked for is less than a second old.
    await second.join()
    await second.subscribe(track_sid)
    track = await asyncio.wait_for(second.tracks.get(), 10)
    indices = await receive_pattern(track, 10)
    assert indices == list(range(indices[0], indices[0] + 10))
    assert second.keyframes[0] is True
    [after] = await plane.stats()
    assert after.keyframe_requests_sent == before.keyframe_requests_sent
