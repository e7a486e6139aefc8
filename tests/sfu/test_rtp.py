"""The packet path's pure logic, with real packets: RTP made by aiortc's own
encoders and packetizers (VP8, H.264) and serializer, RTCP checked against
aiortc's parser, forwarded streams depayloaded and decoded by PyAV."""

from __future__ import annotations

import fractions
import itertools
from collections.abc import Iterator

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Encoder, h264_depayload
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket

from jupyter_video.sfu.rtp import rtcp
from jupyter_video.sfu.rtp.bandwidth import (
    MAX_BITRATE,
    MIN_BITRATE,
    REMB_FRESH_MS,
    SubscriberBandwidth,
    publisher_bitrate,
)
from jupyter_video.sfu.rtp.codecs import Vp8Descriptor, h264_keyframe, vp8_keyframe
from jupyter_video.sfu.rtp.nack import MAX_RETRIES, NackGenerator
from jupyter_video.sfu.rtp.packet import Packet
from jupyter_video.sfu.rtp.receive_stream import ReceiveParameters, ReceiveStream
from jupyter_video.sfu.rtp.ring import PacketRing
from jupyter_video.sfu.rtp.send_stream import SendParameters, SendStream

AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
WIDTH, HEIGHT = 320, 240


def extensions_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    mapping = HeaderExtensionsMap()
    mapping.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uri) for uri, i in ids.items()]))
    return mapping


def video_frames(count: int, seed: int = 0) -> Iterator[av.VideoFrame]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for i in range(count):
        image = np.roll(base, i * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        yield frame


def encoded_stream(
    encoder: Vp8Encoder | H264Encoder,
    frames: int,
    *,
    ssrc: int,
    payload_type: int,
    first_sequence: int,
    first_timestamp: int,
    extensions: dict[str, int] | None = None,
    seed: int = 0,
) -> list[bytes]:
    """RTP packets as an aiortc sender makes them from ``frames`` encoded frames."""
    mapping = extensions_map(extensions or {})
    out = []
    sequence = first_sequence
    for frame in video_frames(frames, seed):
        payloads, timestamp = encoder.encode(frame)
        for i, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=payload_type,
                sequence_number=sequence & 0xFFFF,
                timestamp=(first_timestamp + timestamp) & 0xFFFFFFFF,
                ssrc=ssrc,
                payload=payload,
                marker=i == len(payloads) - 1,
            )
            if extensions:
                packet.extensions.mid = "0"
            out.append(packet.serialize(mapping))
            sequence += 1
    return out


def decode(codec: str, packets: list[bytes]) -> list[av.VideoFrame]:
    """Depayload in order (frames end on the marker bit) and decode with PyAV."""
    depayload = vp8_depayload if codec == "vp8" else h264_depayload
    decoder = av.CodecContext.create("libvpx" if codec == "vp8" else "h264", "r")
    frames, frame = [], b""
    for data in packets:
        packet = RtpPacket.parse(data)
        frame += depayload(packet.payload)
        if packet.marker:
            frames += decoder.decode(av.Packet(frame))
            frame = b""
    return frames


def vp8_params(**kw: object) -> ReceiveParameters:
    return ReceiveParameters(kind="video", mime_type="video/VP8", clock_rate=90000,
                             payload_type=96, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ headers


def test_a_packet_reads_the_header_aiortc_wrote() -> None:
    mapping = extensions_map({AUDIO_LEVEL: 1, MID: 4})
    packet = RtpPacket(payload_type=111, sequence_number=65535, timestamp=0xFFFFFFF0,
                       ssrc=0xCAFEBABE, payload=b"opus", marker=True)
    packet.extensions.mid = "a1"
    packet.extensions.audio_level = (True, 42)
    parsed = Packet(packet.serialize(mapping), arrival_ms=7)
    assert (parsed.payload_type, parsed.sequence, parsed.timestamp, parsed.ssrc) == (
        111, 65535, 0xFFFFFFF0, 0xCAFEBABE)
    assert parsed.marker and parsed.payload == b"opus" and parsed.arrival_ms == 7
    assert parsed.extension(4) == b"a1"
    assert parsed.extension(1) == bytes([0x80 | 42])
    assert parsed.extension(2) is None
    padded = packet.serialize(mapping)
    padded = bytes([padded[0] | 0x20]) + padded[1:] + b"\0\0\3"
    assert Packet(padded).payload == b"opus"
    with pytest.raises(ValueError, match="version"):
        Packet(b"\x40" + bytes(11))
    with pytest.raises(ValueError, match="shorter"):
        Packet(b"\x80\x60")


# ------------------------------------------------------------------ keyframes


def test_vp8_keyframes_are_told_by_the_first_packet_of_a_key_picture() -> None:
    packets = encoded_stream(Vp8Encoder(), 3, ssrc=1, payload_type=96, first_sequence=0,
                             first_timestamp=0)
    payloads = [RtpPacket.parse(p) for p in packets]
    first_frame = [p for p in payloads if p.timestamp == payloads[0].timestamp]
    assert len(first_frame) > 1  # noise: the keyframe spans several packets
    assert vp8_keyframe(first_frame[0].payload)
    assert not any(vp8_keyframe(p.payload) for p in first_frame[1:])
    assert not any(vp8_keyframe(p.payload) for p in payloads[len(first_frame):])


def test_h264_keyframes_are_told_alone_in_stap_a_and_at_the_start_of_fu_a() -> None:
    packets = encoded_stream(H264Encoder(), 2, ssrc=1, payload_type=102, first_sequence=0,
                             first_timestamp=0)
    payloads = [RtpPacket.parse(p).payload for p in packets]
    types = [p[0] & 0x1F for p in payloads]
    assert 28 in types  # noise at 320x240: the IDR slice is fragmented
    key = [h264_keyframe(p) for p in payloads]
    fu_starts = [i for i, p in enumerate(payloads) if p[0] & 0x1F == 28 and p[1] & 0x80]
    assert key[fu_starts[0]]
    assert not any(key[i] for i, p in enumerate(payloads) if p[0] & 0x1F == 28 and not p[1] & 0x80)
    idr = bytes([0x65]) + payloads[fu_starts[0]][2:50]
    sps = bytes([0x67, 0x42, 0x00, 0x1F])
    stap = bytes([24]) + len(sps).to_bytes(2, "big") + sps + len(idr).to_bytes(2, "big") + idr
    assert h264_keyframe(stap) and h264_keyframe(idr)
    assert h264_keyframe(bytes([24]) + len(sps).to_bytes(2, "big") + sps)  # SPS: start here
    pps = bytes([0x68, 0xCE])
    assert not h264_keyframe(bytes([24]) + len(pps).to_bytes(2, "big") + pps)
    assert not h264_keyframe(bytes([0x41, 0x9A]))  # a non-IDR slice


def test_the_ring_starts_new_subscribers_on_the_first_packet_of_the_last_keyframe() -> None:
    packets = encoded_stream(H264Encoder(), 4, ssrc=5, payload_type=102, first_sequence=65530,
                             first_timestamp=1000)
    stream = ReceiveStream(ReceiveParameters("video", "video/H264", 90000, 102), local_ssrc=9)
    for data in packets:
        assert stream.receive(Packet(data)) is not None
    start = stream.ring.from_keyframe()
    assert start is not None and len(start) == len(packets)  # all since the first keyframe
    assert start[0].sequence == 65530 and start[-1].extended_sequence == 65530 + len(packets) - 1
    assert decode("h264", [p.data for p in start])[0].width == WIDTH
    ring = PacketRing(16)
    for i, packet in enumerate(start[:20]):
        packet.extended_sequence = i
        ring.add(packet)
    assert ring.from_keyframe() is None  # the keyframe fell out of a small ring
    with pytest.raises(ValueError):
        PacketRing(1000)


# ------------------------------------------------------------------ loss


def test_nack_generator_asks_for_gaps_each_round_trip_then_gives_up() -> None:
    nack = NackGenerator()
    for sequence in (10, 11, 14):
        assert not nack.on_packet(sequence)
    assert nack.due(now_ms=0, rtt_ms=50) == [12, 13]
    assert nack.due(now_ms=30, rtt_ms=50) == []  # not again within a round trip
    assert nack.due(now_ms=50, rtt_ms=50) == [12, 13]
    assert nack.on_packet(12, now_ms=60)  # the retransmission fills the gap
    assert not nack.on_packet(12, now_ms=60)
    assert nack.rtt_ms is None  # asked twice: which NACK it answers is unknown
    assert nack.recovered == 1
    for k in range(2, MAX_RETRIES):  # asked twice already: MAX_RETRIES in all
        assert nack.due(now_ms=50 * k, rtt_ms=50) == [13]
    assert nack.due(now_ms=10_000, rtt_ms=50) == []
    assert nack.missing == {} and nack.asked == 2 + MAX_RETRIES
    nack.on_packet(5000)  # a gap no retransmission can repair
    assert nack.keyframe_needed and nack.missing == {}


def test_nack_round_trip_is_measured_from_packets_asked_for_once() -> None:
    nack = NackGenerator()
    for sequence in (1, 3, 5):
        nack.on_packet(sequence)
    assert nack.due(now_ms=1000, rtt_ms=100) == [2, 4]
    assert nack.on_packet(2, now_ms=1040)
    assert nack.rtt_ms == 40
    assert nack.on_packet(4, now_ms=1120)
    assert nack.rtt_ms == pytest.approx(40 + (120 - 40) / 8)


def test_nacks_toward_a_publisher_are_repeated_after_the_measured_round_trip() -> None:
    packets = encoded_stream(Vp8Encoder(), 3, ssrc=0x1111, payload_type=96, first_sequence=100,
                             first_timestamp=0)
    stream = ReceiveStream(vp8_params(ssrc=0x1111), local_ssrc=9)
    for i, data in enumerate(packets):
        if i not in (1, 3):
            stream.receive(Packet(data))
    assert stream.rtt_ms == 100  # nothing measured yet

    def asked(now: int) -> list[int]:
        feedback = stream.nack_feedback(now_ms=now)
        if not feedback:
            return []
        [(_, _, start, end)] = rtcp.packets(feedback)
        return rtcp.nacked(feedback, start, end)

    assert asked(0) == [101, 103]
    assert asked(99) == [] and asked(100) == [101, 103]  # the default 100 ms
    # One answered after one NACK (the other was asked twice): 30 ms, from now on.
    stream.nack.missing[101] = [1, 100]
    assert stream.nack.on_packet(101, now_ms=130)
    assert stream.rtt_ms == 30
    assert asked(129) == [] and asked(130) == [103]
    # A Receiver Report's round trip (the peer's, same transport) is preferred.
    stream.reported_rtt_ms = 60
    assert asked(189) == [] and asked(190) == [103]
    stream.reported_rtt_ms = 5  # loopback: no faster than MIN_INTERVAL_MS
    assert asked(200) == [] and asked(210) == [103]


def test_rtx_is_unwrapped_into_the_packet_it_repairs() -> None:
    packets = encoded_stream(Vp8Encoder(), 2, ssrc=0x1111, payload_type=96, first_sequence=100,
                             first_timestamp=0)
    stream = ReceiveStream(vp8_params(ssrc=0x1111, rtx_ssrc=0x2222, rtx_payload_type=97),
                           local_ssrc=9)
    lost = 2
    for i, data in enumerate(packets):
        if i != lost:
            stream.receive(Packet(data))
    assert stream.nack_feedback(now_ms=0)
    [(kind, fmt, start, end)] = rtcp.packets(stream.nack_feedback(now_ms=1000))
    assert (kind, fmt) == (rtcp.RTPFB, rtcp.NACK_FMT) and rtcp.nacked(
        stream.nack_feedback(now_ms=2000), start, end) == [100 + lost]
    original = RtpPacket.parse(packets[lost])
    rtx = RtpPacket(payload_type=97, sequence_number=7, timestamp=original.timestamp,
                    ssrc=0x2222, payload=original.sequence_number.to_bytes(2, "big")
                    + original.payload, marker=original.marker)
    repaired = stream.receive(Packet(rtx.serialize()))
    assert repaired is not None and repaired.data == packets[lost]
    assert stream.retransmissions_received == 1 and stream.nack.recovered == 1
    assert stream.receive(Packet(rtx.serialize())) is None  # twice: a duplicate
    assert decode("vp8", [p.data for p in stream.ring.from_keyframe() or []])[0].height == HEIGHT


# ------------------------------------------------------------------ forwarding


def subscriber(**kw: object) -> SendStream:
    return SendStream(SendParameters(kind="video", mime_type="video/VP8", clock_rate=90000,
                                     payload_type=100, ssrc=0xABCD, mid="3",
                                     extensions={MID: 9, ABS_SEND_TIME: 2}, **kw),  # type: ignore[arg-type]
                      first_sequence=500)


def test_a_subscriber_stream_stays_continuous_across_a_change_of_source() -> None:
    first = encoded_stream(Vp8Encoder(), 10, ssrc=1, payload_type=96, first_sequence=65000,
                           first_timestamp=4_000_000_000, extensions={MID: 1}, seed=1)
    second = encoded_stream(Vp8Encoder(), 10, ssrc=2, payload_type=98, first_sequence=3,
                            first_timestamp=12345, extensions={MID: 1}, seed=2)
    sending = subscriber()
    out = []
    now = 0
    for source, params in ((first, vp8_params(ssrc=1)),
                           (second, ReceiveParameters("video", "video/VP8", 90000, 98, ssrc=2))):
        stream = ReceiveStream(params, local_ssrc=9)
        sending.switch_source({1: MID})
        for data in source:
            now += 5
            packet = stream.receive(Packet(data, arrival_ms=now))
            assert packet is not None
            out.append(sending.forward(packet, now, ntp_time=now << 32))
    parsed = [RtpPacket.parse(p, extensions_map({MID: 9, ABS_SEND_TIME: 2})) for p in out]
    assert [p.sequence_number for p in parsed] == [(500 + i) & 0xFFFF for i in range(len(out))]
    assert {(p.ssrc, p.payload_type) for p in parsed} == {(0xABCD, 100)}
    assert {p.extensions.mid for p in parsed} == {"3"}  # the subscriber's mid, its id
    assert all(p.extensions.abs_send_time is not None for p in parsed)
    timestamps = [p.timestamp for p in parsed]
    assert timestamps[0] == 4_000_000_000
    steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(timestamps)]
    assert all(0 <= s < 90000 for s in steps) and steps.count(0) < len(steps)
    pictures = []
    for p in parsed:
        d = Vp8Descriptor.parse(p.payload)
        assert d is not None and d.picture_id is not None
        if d.start:
            pictures.append(d.picture_id)
    assert pictures == [(pictures[0] + i) & 0x7FFF for i in range(20)]
    frames = decode("vp8", out)
    assert len(frames) == 20 and {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}


def test_padding_is_not_forwarded_and_leaves_no_gap() -> None:
    packets = encoded_stream(Vp8Encoder(), 3, ssrc=1, payload_type=96, first_sequence=0,
                             first_timestamp=0)
    stream = ReceiveStream(vp8_params(ssrc=1), local_ssrc=9)
    sending = subscriber()
    sending.switch_source({})
    out = []
    for i, data in enumerate(packets):
        sequence = i + (1 if i >= 2 else 0)
        data = data[:2] + sequence.to_bytes(2, "big") + data[4:]
        if i == 2:
            padding = RtpPacket(payload_type=96, sequence_number=2, timestamp=0, ssrc=1)
            padding.padding_size = 200  # as Chrome probes bandwidth
            assert RtpPacket.parse(padding.serialize()).padding_size == 200
            assert stream.receive(Packet(padding.serialize())) is None
        packet = stream.receive(Packet(data))
        assert packet is not None
        out.append(RtpPacket.parse(sending.forward(packet, i)).sequence_number)
    assert out == list(range(500, 500 + len(packets)))
    assert stream.padding_received == 1


def test_subscriber_nacks_are_answered_by_rtx_from_what_was_sent() -> None:
    packets = encoded_stream(Vp8Encoder(), 2, ssrc=1, payload_type=96, first_sequence=0,
                             first_timestamp=0)
    stream = ReceiveStream(vp8_params(ssrc=1), local_ssrc=9)
    with_rtx = subscriber(rtx_payload_type=101, rtx_ssrc=0xBEEF)
    plain = subscriber()
    sent: list[bytes] = []
    for data in packets:
        packet = stream.receive(Packet(data))
        assert packet is not None
        sent.append(with_rtx.forward(packet, 0))
        plain.forward(packet, 0)
    nack = rtcp.nack(0x77, 0xABCD, [501, 503])
    [(_, _, start, end)] = rtcp.packets(nack)
    [aiortc_nack] = RtcpPacket.parse(nack)
    assert aiortc_nack.lost == [501, 503] == rtcp.nacked(nack, start, end)
    answers = with_rtx.retransmissions(rtcp.nacked(nack, start, end))
    rtx = [RtpPacket.parse(a) for a in answers]
    assert [(p.ssrc, p.payload_type) for p in rtx] == [(0xBEEF, 101)] * 2
    assert [p.sequence_number for p in rtx] == [500, 501]
    for p, seq in zip(rtx, (501, 503), strict=True):
        original = RtpPacket.parse(sent[seq - 500])
        assert p.payload == seq.to_bytes(2, "big") + original.payload
        assert p.timestamp == original.timestamp
    assert plain.retransmissions([502]) == [sent[2]]  # no RTX negotiated: the packet again
    assert with_rtx.retransmissions([60000]) == [] and with_rtx.nacks_unanswered == 1


# ------------------------------------------------------------------ RTCP


def test_sender_reports_carry_real_counts_and_receiver_reports_give_the_round_trip() -> None:
    packets = encoded_stream(Vp8Encoder(), 3, ssrc=1, payload_type=96, first_sequence=0,
                             first_timestamp=0)
    stream = ReceiveStream(vp8_params(ssrc=1), local_ssrc=9)
    sending = subscriber()
    assert sending.sender_report(0, 0) == b""
    payload_bytes = 0
    for data in packets:
        packet = stream.receive(Packet(data))
        assert packet is not None
        sending.forward(packet, 1000)
        payload_bytes += len(packet.payload)
    ntp = (3_900_000_000 << 32) | (1 << 31)
    [sr] = RtcpPacket.parse(sending.sender_report(1500, ntp))
    assert (sr.ssrc, sr.sender_info.packet_count, sr.sender_info.octet_count) == (
        0xABCD, len(packets), payload_bytes)
    assert sr.sender_info.rtp_timestamp == sending.last_timestamp + 45000  # 0.5 s later
    assert (sr.sender_info.ntp_timestamp) == ntp
    # The subscriber answers 100 ms later, having held it 20 ms.
    later = ntp + (int(0.1 * (1 << 32)))
    block = rtcp.ReportBlock(ssrc=0xABCD, fraction_lost=64, packets_lost=3,
                             highest_sequence=510, jitter=0, last_sr=rtcp.ntp_middle(ntp),
                             delay_since_last_sr=int(0.02 * 65536))
    [rr] = RtcpPacket.parse(rtcp.receiver_report(0x77, [block]))
    assert (rr.reports[0].lsr, rr.reports[0].fraction_lost, rr.reports[0].packets_lost) == (
        block.last_sr, 64, 3)
    report = rtcp.receiver_report(0x77, [block])
    [(kind, count, start, end)] = rtcp.packets(report)
    [decoded] = rtcp.report_blocks(report, kind, count, start, end)
    sending.on_receiver_report(decoded, later)
    assert sending.rtt_ms == pytest.approx(80, abs=1)
    assert sending.fraction_lost == 64


def test_receiver_feedback_reports_loss_and_remb_and_keyframe_requests_are_rate_limited() -> None:
    packets = encoded_stream(Vp8Encoder(), 3, ssrc=1, payload_type=96, first_sequence=0,
                             first_timestamp=0)
    stream = ReceiveStream(vp8_params(ssrc=1), local_ssrc=9)
    for i, data in enumerate(packets):
        if i != 1:
            stream.receive(Packet(data))
    stream.on_sender_report((5 << 32), arrival_ms=1000)
    feedback = RtcpPacket.parse(stream.receiver_feedback(now_ms=1500))
    rr, remb = feedback
    assert rr.ssrc == 9 and rr.reports[0].ssrc == 1
    assert rr.reports[0].packets_lost == 1 and rr.reports[0].highest_sequence == len(packets) - 1
    assert rr.reports[0].lsr == rtcp.ntp_middle(5 << 32)
    assert rr.reports[0].dlsr == 32768  # 0.5 s
    payload = stream.receiver_feedback(now_ms=1600)
    kinds = [(t, f) for t, f, _, _ in rtcp.packets(payload)]
    assert kinds == [(rtcp.RR, 1), (rtcp.PSFB, rtcp.REMB_FMT)]
    [_, (_, _, start, end)] = list(rtcp.packets(payload))
    assert rtcp.remb_bitrate(payload, start, end) == (3_000_000 >> 3 << 3, [1])
    assert remb.media_ssrc == 0
    assert stream.keyframe_request(now_ms=0) == rtcp.pli(9, 1)
    assert stream.keyframe_request(now_ms=999) is None
    assert stream.keyframe_request(now_ms=1000) is not None
    assert stream.keyframe_requests_sent == 2
    fir_stream = ReceiveStream(vp8_params(ssrc=1, pli=False), local_ssrc=9)
    fir_stream.receive(Packet(packets[0]))
    fir = fir_stream.keyframe_request(now_ms=0)
    assert fir is not None
    [(_, fmt, start, end)] = rtcp.packets(fir)
    assert fmt == rtcp.FIR_FMT and rtcp.fir_ssrcs(fir, start, end) == [1]


def test_extensions_go_in_the_two_byte_form_when_the_subscriber_numbers_them_past_14() -> None:
    mapping = extensions_map({AUDIO_LEVEL: 1, MID: 2})
    packet = RtpPacket(payload_type=111, sequence_number=1, timestamp=960, ssrc=7,
                       payload=b"opus")
    packet.extensions.mid = "0"
    packet.extensions.audio_level = (False, 33)
    received = Packet(packet.serialize(mapping))
    for ids in ({AUDIO_LEVEL: 5, MID: 6}, {AUDIO_LEVEL: 20, MID: 21}):
        sending = SendStream(SendParameters(kind="audio", mime_type="audio/opus",
                                            clock_rate=48000, payload_type=109, ssrc=0xA,
                                            mid="a7", extensions=ids))
        sending.switch_source({1: AUDIO_LEVEL, 2: MID})
        out = RtpPacket.parse(sending.forward(received, 0), extensions_map(ids))
        assert (out.extensions.mid, out.extensions.audio_level) == ("a7", (False, 33))
        assert out.payload == b"opus" and out.payload_type == 109


async def test_a_simulcast_publication_forwards_the_best_layer_sending_switching_at_keyframes(
) -> None:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from jupyter_video.sfu.publication import MediaPublication

    class Sink:  # the subscriber side, as the publication sees it
        wants_frames = False
        waiting_for_keyframe = True

        def __init__(self) -> None:
            self.ssrcs: list[int] = []

        def send_packet(self, packet: Packet, now: int, ntp: int) -> bool:
            if self.waiting_for_keyframe and not packet.keyframe:
                return False
            self.waiting_for_keyframe = False
            self.ssrcs.append(packet.ssrc)
            return True

        def resync(self) -> None:
            self.waiting_for_keyframe = True

    rtcp_sent: list[bytes] = []
    publication = MediaPublication("PA" + "1" * 32, "camera", "video")
    publication.attach([RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000,
                                              payloadType=96)], {}, rtcp_sent.append, 9)
    publication.set_layers([(11, None), (22, None), (33, None)])
    sink = Sink()
    publication.subscriptions.append(sink)  # type: ignore[arg-type]
    layers = {ssrc: encoded_stream(Vp8Encoder(), 4, ssrc=ssrc, payload_type=96,
                                   first_sequence=100 * ssrc, first_timestamp=0, seed=ssrc)
              for ssrc in (11, 33)}
    low, high = layers[11], layers[33]

    def feed(data: bytes, at_ms: int) -> None:
        publication.receive_packet(Packet(data, arrival_ms=at_ms))

    for data in low[:3]:
        feed(data, 0)
    assert sink.ssrcs == [11] * 3
    feed(high[1], 10)  # the high layer starts, but not on a keyframe: ask it for one
    assert sink.ssrcs == [11] * 3 and rtcp_sent[-1] == rtcp.pli(9, 33)
    feed(high[0], 20)  # its keyframe: forwarding moves up
    feed(low[3], 30)
    for data in high[2:]:
        feed(data, 40)
    assert sink.ssrcs == [11] * 3 + [33] * (len(high) - 1)
    assert publication.ring is publication.layers[2].ring
    # The high layer stops (the publisher's estimate dropped it): down to the low one.
    later = encoded_stream(Vp8Encoder(), 2, ssrc=11, payload_type=96, first_sequence=2000,
                           first_timestamp=0, seed=5)
    feed(later[-1], 3000)
    assert rtcp_sent[-1] == rtcp.pli(9, 11)
    feed(later[0], 3010)
    assert sink.ssrcs[-1] == 11


async def test_an_audio_publication_with_loss_asks_for_nothing_and_arms_no_nack_timer() -> None:
    """Audio is never NACKed (Opus is not retransmitted; twilio-video negotiates no
    nack for it), so a gap in an audio stream must not start the 20 ms NACK timer,
    which would then run for as long as the publication lives."""
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from jupyter_video.sfu.publication import MediaPublication

    rtcp_sent: list[bytes] = []
    publication = MediaPublication("PA" + "1" * 32, "microphone", "audio")
    publication.attach([RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000,
                                              channels=2, payloadType=111)], {},
                       rtcp_sent.append, 9)
    for sequence in (1, 2, 5, 6, 9):  # 3, 4, 7 and 8 lost
        header = RtpPacket(payload_type=111, sequence_number=sequence,
                           timestamp=960 * sequence, ssrc=77, payload=b"\xfc\xff\xfe")
        publication.receive_packet(Packet(header.serialize(), arrival_ms=20 * sequence))
    assert publication.stream is not None and publication.stream.packets_received == 5
    assert publication._nack_timer is None
    assert rtcp_sent == []


# ------------------------------------------------------------------ bandwidth


def test_publishers_are_told_what_the_best_subscriber_takes_never_the_worst() -> None:
    clean, lossy = SubscriberBandwidth(), SubscriberBandwidth()
    for sub in (clean, lossy):
        sub.on_remb(400_000, now_ms=0)  # a receiver's REMB follows what it gets
    clean.on_receiver_report(fraction_lost=3, octets_sent=0, now_ms=0)
    clean.on_receiver_report(fraction_lost=3, octets_sent=125_000, now_ms=1000)
    lossy.on_receiver_report(fraction_lost=64, octets_sent=0, now_ms=0)
    lossy.on_receiver_report(fraction_lost=64, octets_sent=125_000, now_ms=1000)  # 25 % lost
    assert clean.wanted(1000) is None  # takes all it gets: REMB does not hold it
    assert lossy.received_bps == 750_000
    assert lossy.wanted(1000) == 400_000  # its REMB, below 750k less half the loss
    assert publisher_bitrate([]) == MAX_BITRATE
    assert publisher_bitrate([clean.wanted(1000), lossy.wanted(1000)]) == MAX_BITRATE
    assert publisher_bitrate([lossy.wanted(1000)]) == 400_000
    # Its REMB gone stale, what it received less half its loss (GCC's rule).
    assert lossy.wanted(1000 + REMB_FRESH_MS + 1) == 750_000 * (512 - 64) // 512
    other = SubscriberBandwidth()
    other.on_remb(1_200_000, now_ms=1000)
    other.on_receiver_report(fraction_lost=40, octets_sent=0, now_ms=1000)
    assert publisher_bitrate([lossy.wanted(1000), other.wanted(1000)]) == 1_200_000
    starving = SubscriberBandwidth()
    starving.on_remb(20_000, now_ms=0)
    starving.on_receiver_report(fraction_lost=200, octets_sent=0, now_ms=0)
    assert publisher_bitrate([starving.wanted(0)]) == MIN_BITRATE


def test_receiver_feedback_carries_the_remb_it_is_given() -> None:
    stream = ReceiveStream(vp8_params(ssrc=0x1111), local_ssrc=9)
    for data in encoded_stream(Vp8Encoder(), 1, ssrc=0x1111, payload_type=96,
                               first_sequence=1, first_timestamp=0):
        stream.receive(Packet(data))
    feedback = stream.receiver_feedback(0, 400_000)
    rembs = [rtcp.remb_bitrate(feedback, start, end)
             for kind, fmt, start, end in rtcp.packets(feedback)
             if kind == rtcp.PSFB and fmt == rtcp.REMB_FMT]
    assert rembs == [(400_000, [0x1111])]
