"""The packet path's own per-packet cost, without sockets or an event loop.

Real VP8 packets (aiortc's encoder and packetizer, 640x480 moving noise) go
through what the SFU does for each: ``Packet`` parse and
``ReceiveStream.receive`` once, then ``SendStream.forward`` (SSRC, payload type,
sequence, timestamp, mid / abs-send-time extensions, VP8 descriptor) and SRTP
protection (pylibsrtp, AES-128-CM) once per subscriber. What it leaves out
(aioice's datagram callback, aiortc's unprotect, ``sendto``) is measured
all-in by forwarding.py. Prints one JSON line.

    python benchmarks/packet_path.py --subscribers 1,9 --rounds 40
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import time

import av
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from jupyter_video.sfu.rtp.clock import now_ms, ntp_now
from jupyter_video.sfu.rtp.packet import Packet
from jupyter_video.sfu.rtp.receive_stream import ReceiveParameters, ReceiveStream
from jupyter_video.sfu.rtp.send_stream import (
    ABS_SEND_TIME_URI,
    MID_URI,
    SendParameters,
    SendStream,
)

FRAMES = 60


def vp8_packets() -> list[bytes]:
    """RTP packets of FRAMES encoded frames, with a mid extension as browsers send."""
    mapping = HeaderExtensionsMap()
    mapping.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=4, uri=MID_URI)]))
    encoder = Vp8Encoder()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    packets = []
    for i in range(FRAMES):
        frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1), format="rgb24")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame)
        for k, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=96, sequence_number=len(packets) & 0xFFFF,
                               timestamp=timestamp, ssrc=1, payload=payload,
                               marker=k == len(payloads) - 1)
            packet.extensions.mid = "0"
            packets.append(packet.serialize(mapping))
    return packets


def srtp_session(key: bytes) -> Session:
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    return Session(policy)


def us_per_packet(packets: list[bytes], subscribers: int, rounds: int, srtp: bool) -> float:
    receiving = ReceiveStream(
        ReceiveParameters("video", "video/VP8", 90000, 96, ssrc=1, extensions={4: MID_URI}),
        local_ssrc=9)
    sending = [SendStream(SendParameters("video", "video/VP8", 90000, 100, 1000 + i, mid="1",
                                         extensions={MID_URI: 9, ABS_SEND_TIME_URI: 2}))
               for i in range(subscribers)]
    for stream in sending:
        stream.switch_source({4: MID_URI})
    sessions = [srtp_session(os.urandom(30)) for _ in sending]
    sequence = 0
    started = time.perf_counter()
    for _ in range(rounds):
        for data in packets:
            data = data[:2] + (sequence & 0xFFFF).to_bytes(2, "big") + data[4:]
            sequence += 1
            packet = receiving.receive(Packet(data))
            assert packet is not None
            now, ntp = now_ms(), ntp_now()
            for stream, session in zip(sending, sessions, strict=True):
                out = stream.forward(packet, now, ntp)
                if srtp:
                    session.protect(out)
    return (time.perf_counter() - started) / (rounds * len(packets)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", default="1,9")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    packets = vp8_packets()
    results = []
    for n in [int(n) for n in args.subscribers.split(",")]:
        us_per_packet(packets, n, 2, srtp=True)  # warm up
        logic = us_per_packet(packets, n, args.rounds, srtp=False)
        total = us_per_packet(packets, n, args.rounds, srtp=True)
        results.append({"subscribers": n, "us_per_received_packet_logic": round(logic, 2),
                        "us_per_received_packet_with_srtp": round(total, 2),
                        "us_per_forwarded_copy_with_srtp": round(total / n, 2)})
    print(json.dumps({"benchmark": "packet_path", "packets": len(packets) * args.rounds,
                      "load_average": os.getloadavg()[0], "results": results}))


if __name__ == "__main__":
    main()
