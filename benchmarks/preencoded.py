"""Pre-encoded media for benchmark clients, and counting what they receive cheaply.

A benchmark that runs many participants on the SFU's machine must not spend its
cores encoding and decoding: the clients here encode a few seconds of VP8 and
Opus once (PyAV's libvpx and libopus), and replay those encoded frames in a loop
as ``av.Packet`` objects, which aiortc's senders only packetize (the path
``MediaPlayer(decode=False)`` uses: ``RTCRtpSender._next_encoded_frame`` calls
``encoder.pack(packet)`` for a packet). Receiving, a client takes each SRTP
packet once unprotected (``_aiortc.divert_srtp``) and counts it: no jitter
buffer, no depacketizer, no decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import os
import pickle
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

VIDEO_RATE = 90_000
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms at 48 kHz
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``'s live threads, in nanoseconds' precision from
    ``/proc/<pid>/task/*/schedstat`` (``/proc/<pid>/stat`` counts 10 ms ticks: a 3 %
    process over 10 s would be read to +-30 %)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(f) for f in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


# ------------------------------------------------------------------- encoding


@dataclass
class EncodedMedia:
    """A loop of encoded frames: VP8 (keyframe every second) and Opus (20 ms)."""

    width: int
    height: int
    fps: int
    video_bitrate: int
    video: list[bytes]
    audio: list[bytes]


def _picture(index: int, width: int, height: int) -> np.ndarray:
    """Gradients and 64-pixel blocks in motion: about 2 kB a frame (two RTP packets)
    at 640x480 and 470 kbit/s, as a camera's 500 kbit/s stream is."""
    x = np.arange(width, dtype=np.int32)
    y = np.arange(height, dtype=np.int32)[:, None]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = ((x + 4 * index) % 256).astype(np.uint8)
    frame[..., 1] = ((y + 2 * index) % 256).astype(np.uint8)
    frame[..., 2] = (((x // 64 + (y + 4 * index) // 64) % 2) * 160 + 40).astype(np.uint8)
    return frame


def encode(
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    video_bitrate: int = 470_000,
    seconds: int = 4,
) -> EncodedMedia:
    """Encode ``seconds`` of video and audio once (a few seconds of one core)."""
    vp8 = av.CodecContext.create("libvpx", "w")
    vp8.width, vp8.height, vp8.pix_fmt = width, height, "yuv420p"
    vp8.bit_rate = video_bitrate
    vp8.time_base = fractions.Fraction(1, fps)
    vp8.framerate = fractions.Fraction(fps, 1)
    vp8.gop_size = seconds * fps  # one keyframe a loop, as a camera sends on PLIs only
    vp8.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    video: list[bytes] = []
    for index in range(seconds * fps):
        frame = av.VideoFrame.from_ndarray(_picture(index, width, height), format="rgb24")
        frame.pts = index
        video += [bytes(p) for p in vp8.encode(frame.reformat(format="yuv420p"))]
    video += [bytes(p) for p in vp8.encode(None)]

    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = AUDIO_RATE, "stereo", "s16"
    opus.bit_rate = 32_000
    rng = np.random.default_rng(3)
    audio: list[bytes] = []
    samples = seconds * AUDIO_RATE
    t = np.arange(samples) / AUDIO_RATE
    voice = np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    signal = (voice * 8000 + rng.normal(0, 500, samples)).astype(np.int16)
    for start in range(0, samples - AUDIO_FRAME + 1, AUDIO_FRAME):
        chunk = np.repeat(signal[start : start + AUDIO_FRAME], 2).reshape(1, -1)
        sound = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        sound.sample_rate, sound.pts = AUDIO_RATE, start
        audio += [bytes(p) for p in opus.encode(sound)]
    return EncodedMedia(width, height, fps, video_bitrate, video, audio)


def encoded_media(**settings: int) -> EncodedMedia:
    """:func:`encode`'s result, kept in a temporary file for the next process and run."""
    name = "-".join(f"{k}{v}" for k, v in sorted(settings.items())) or "default"
    path = Path(tempfile.gettempdir()) / f"jupyter-video-bench-media-{name}.pickle"
    if path.exists():
        media: EncodedMedia = pickle.loads(path.read_bytes())
        return media
    media = encode(**settings)
    partial = path.with_suffix(f".{os.getpid()}")
    partial.write_bytes(pickle.dumps(media))
    partial.replace(path)
    return media


# ------------------------------------------------------------------- sending


class PreEncodedTrack(MediaStreamTrack):
    """Replays ``frames`` in a loop, in real time, as ``av.Packet`` objects.

    ``jitter`` (RTP ticks) moves each frame's timestamp by a seeded random amount
    around its nominal place and sends it then: the sequence of intervals becomes
    a fingerprint that finds, at the receiving end, which frame a packet carries
    however the SFU rewrote timestamps (``benchmarks/latency.py``).
    """

    def __init__(
        self, kind: str, frames: list[bytes], interval: int, clock_rate: int, jitter: int = 0
    ) -> None:
        super().__init__()
        self.kind = kind
        self._frames = frames
        self._interval = interval
        self._time_base = fractions.Fraction(1, clock_rate)
        self._clock_rate = clock_rate
        self._jitter = jitter
        self._random = random.Random(f"{kind}-{id(self)}")
        self._start: float | None = None
        self.sent = 0

    async def recv(self) -> av.Packet:
        index = self.sent
        timestamp = index * self._interval
        if self._jitter:
            timestamp += self._random.randint(-self._jitter, self._jitter)
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + timestamp / self._clock_rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._frames[index % len(self._frames)])
        packet.pts = timestamp
        packet.time_base = self._time_base
        self.sent += 1
        return packet


def video_track(media: EncodedMedia, jitter: int = 0) -> PreEncodedTrack:
    return PreEncodedTrack("video", media.video, VIDEO_RATE // media.fps, VIDEO_RATE, jitter)


def audio_track(media: EncodedMedia, jitter: int = 0) -> PreEncodedTrack:
    return PreEncodedTrack("audio", media.audio, AUDIO_FRAME, AUDIO_RATE, jitter)


# ------------------------------------------------------------------- receiving


_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([\w-]+)/", re.MULTILINE)


def payload_kinds(sdp: str) -> dict[int, str]:
    """Payload type -> "audio" / "video" for the media codecs of ``sdp`` (RTX,
    red, ulpfec left out: a retransmission is not a first arrival)."""
    kinds = {}
    for pt, name in _RTPMAP.findall(sdp):
        lowered = name.lower()
        if lowered in ("vp8", "h264", "vp9"):
            kinds[int(pt)] = "video"
        elif lowered in ("opus", "pcmu", "pcma"):
            kinds[int(pt)] = "audio"
    return kinds


@dataclass
class ReceivedStream:
    """One SSRC's packets as a receiver counted them."""

    kind: str
    packets: int = 0
    first_seq: int | None = None
    highest_seq: int = 0  # extended over wraps
    frames: int = 0
    last_timestamp: int | None = None
    seen: set[int] = field(default_factory=set)

    def add(self, seq: int, timestamp: int) -> None:
        if self.first_seq is None:
            self.first_seq = self.highest_seq = seq
        else:
            # Extend ``seq`` to the one nearest the highest seen (RFC 3550 A.1).
            base = self.highest_seq & ~0xFFFF
            extended = base | seq
            if extended - self.highest_seq > 0x8000:
                extended -= 0x10000
            elif self.highest_seq - extended > 0x8000:
                extended += 0x10000
            if extended in self.seen:
                return  # a duplicate (or a retransmission on the primary SSRC)
            self.highest_seq = max(self.highest_seq, extended)
            seq = extended
        self.seen.add(seq)
        self.packets += 1
        if timestamp != self.last_timestamp:
            self.frames += 1
            self.last_timestamp = timestamp

    def snapshot(self) -> tuple[int, int, int]:
        """(packets, frames, packets expected) so far."""
        expected = 0 if self.first_seq is None else self.highest_seq - self.first_seq + 1
        return self.packets, self.frames, expected


class PacketCounter:
    """Counts the RTP packets a peer connection receives, per SSRC, before aiortc's
    receivers (which never see them: no jitter buffer, no decoding)."""

    def __init__(self) -> None:
        self.kinds: dict[int, str] = {}
        self.streams: dict[int, ReceivedStream] = {}

    def on_rtp(self, data: bytes, arrival_time_ms: int) -> bool:
        kind = self.kinds.get(data[1] & 0x7F)
        if kind is None:
            return True  # RTX and the like: taken, not counted
        ssrc = int.from_bytes(data[8:12], "big")
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self.streams[ssrc] = ReceivedStream(kind)
        stream.add(int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:8], "big"))
        return True

    @staticmethod
    def on_rtcp(data: bytes) -> bool:
        return False  # to aiortc: its senders answer the SFU's NACKs and PLIs
