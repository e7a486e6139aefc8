"""A subscriber's stream across simulcast layer switches: each layer numbers its
packets from its own random start, and the subscriber's sequence numbers must run
on by one across every switch, whichever way the layers' numbers lie (else its
SRTP drops the reused numbers as replays); and the VP8 keyframe header gives each
layer's size."""

from __future__ import annotations

import itertools

from jupyter_video.sfu.rtp import packet as rtp_packet
from jupyter_video.sfu.rtp.frames import FramePacketizer
from jupyter_video.sfu.rtp.layers import vp8_keyframe_size
from jupyter_video.sfu.rtp.packet import Packet
from jupyter_video.sfu.rtp.send_stream import SendParameters, SendStream


def packets_of(start: int, count: int, timestamp: int) -> list[Packet]:
    out = []
    for i in range(count):
        packet = Packet(rtp_packet.build(96, (start + i) & 0xFFFF, timestamp + 3000 * i,
                                         1234, b"\x10\x00\x00"))
        out.append(packet)
    return out


def test_sequence_numbers_run_on_across_switches_to_lower_and_higher_numbered_layers() -> None:
    stream = SendStream(SendParameters("video", "video/VP8", 90000, 100, ssrc=42))
    sent = []
    now = 0
    for start in (40000, 100, 30000, 5, 60000):  # layers' random starts, up and down
        stream.switch_source({})
        for packet in packets_of(start, 20, 1000 * start):
            now += 33
            sent.append(int.from_bytes(stream.forward(packet, now)[2:4], "big"))
    steps = {(b - a) & 0xFFFF for a, b in itertools.pairwise(sent)}
    assert steps == {1}, sent


def test_a_vp8_keyframes_first_packet_gives_the_layers_size() -> None:
    # A VP8 key frame's header (RFC 6386 9.1): tag, start code, 14-bit width/height.
    frame = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + (320).to_bytes(2, "little") \
        + (180).to_bytes(2, "little") + bytes(100)
    [payload] = FramePacketizer("video/VP8").payloads(frame)
    packet = Packet(rtp_packet.build(96, 1, 0, 1, payload, marker=True))
    assert vp8_keyframe_size(packet) == (320, 180)
    interframe = Packet(rtp_packet.build(96, 2, 0, 1, payload[:4] + b"\x01" + bytes(20)))
    assert vp8_keyframe_size(interframe) is None
