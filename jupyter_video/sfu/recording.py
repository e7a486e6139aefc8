"""Per-track recording: the encoded frames of a publication, muxed into Matroska.

A :class:`TrackRecorder` takes the complete encoded frames its publication
assembles from the packets it forwards (only while something needs frames,
:meth:`MediaPublication._assemble`), starting with those since the ring's
last keyframe, and hands each one to
PyAV's Matroska muxer as one ``av.Packet``: no decoder, no encoder. Video goes
into ``.mkv``, audio into ``.mka``, as Twilio records them
(https://www.twilio.com/docs/video/api/recordings-resource).

- Timestamps are the RTP timestamps, counted from the first recorded frame:
  a track that is paused or muted leaves a gap in time, not a jump.
- Video starts on a keyframe: the last one the publication's ring holds, so
  the file has what was published when the recording began (the publisher is
  asked for one only when the ring holds none).
- The file is written incrementally: a cluster is closed at least every
  :data:`CLUSTER_MS` and flushed to the file at once, so a process killed in
  the middle of a recording leaves a playable file up to the last cluster.
"""

from __future__ import annotations

import dataclasses
import fractions
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import av
import av.container
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .interface import Event, RecordingEnded, RecordingStarted, RecordingSummary
from .publication import EncodedFrame
from .rtp.frames import split_annexb

logger = logging.getLogger(__name__)

CLUSTER_MS = 1000
"""Longest Matroska cluster in milliseconds: what a crash may lose at most."""

# RTP payload MIME type -> FFmpeg codec name (and Twilio's ``codec``).
CODECS = {"video/vp8": "vp8", "video/h264": "h264", "audio/opus": "opus"}


class TrackRecorder:
    """Writes one publication's encoded frames into one Matroska file."""

    def __init__(
        self,
        recording_sid: str,
        path: str,
        kind: str,
        clock_rate: int,
        report: Callable[[Event], None],
    ) -> None:
        self.recording_sid = recording_sid
        self.path = path
        self.kind = kind
        self.clock_rate = clock_rate
        self.waiting_for_keyframe = kind == "video"
        self.frames_written = 0
        self.closed = False
        self._report = report
        self._container: av.container.OutputContainer | None = None
        self._stream: av.stream.Stream | None = None
        self._time_base = fractions.Fraction(1, clock_rate)
        self._codec: str | None = None
        self._origin: int | None = None  # RTP timestamp of the first recorded frame
        self._last: int | None = None
        self._last_step = 0
        self._started_at: float | None = None
        self._error: str | None = None

    # ----------------------------------------------------------- frames in

    def push(self, codec: RTCRtpCodecParameters, frame: EncodedFrame) -> None:
        """Write ``frame`` (from the publication's receive path; never raises)."""
        if self.closed:
            return
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                return
            self.waiting_for_keyframe = False
        if self._last is not None and frame.timestamp <= self._last:
            return  # the muxer needs increasing timestamps
        try:
            if self._container is None:
                self._open(codec, frame)
            self._write(frame)
        except Exception as exc:  # a full disk must not end the publication
            logger.exception("recording %s: writing %s failed", self.recording_sid, self.path)
            self._error = f"{type(exc).__name__}: {exc}"
            self.end()

    def _open(self, codec: RTCRtpCodecParameters, frame: EncodedFrame) -> None:
        name = CODECS.get(codec.mimeType.lower())
        if name is None:
            raise ValueError(f"{codec.mimeType} cannot be recorded")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            self.path,
            "w",
            format="matroska",
            # Close a cluster every CLUSTER_MS and flush it to the file at once
            # (matroskaenc keeps the open cluster in memory).
            container_options={"cluster_time_limit": str(CLUSTER_MS)},
            options={"flush_packets": "1"},
        )
        if self.kind == "video":
            width, height = frame_size(name, frame.data)
            stream = container.add_mux_stream(name, width=width, height=height)
        else:
            stream = container.add_mux_stream(name, rate=codec.clockRate)
        self._container, self._stream, self._codec = container, stream, name
        self._origin = frame.timestamp
        self._started_at = time.time()
        self._report(RecordingStarted(self.recording_sid, name, self._started_at))

    def _write(self, frame: EncodedFrame) -> None:
        assert self._container is not None and self._stream is not None
        assert self._origin is not None
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = frame.timestamp - self._origin
        packet.time_base = self._time_base
        packet.stream = self._stream
        packet.is_keyframe = frame.keyframe
        self._container.mux_one(packet)
        if self._last is not None:
            self._last_step = frame.timestamp - self._last
        self._last = frame.timestamp
        self.frames_written += 1

    # ----------------------------------------------------------- ending

    @property
    def duration(self) -> float:
        """Seconds of media written (the last frame lasting as long as the one before)."""
        if self._origin is None or self._last is None:
            return 0.0
        return (self._last - self._origin + self._last_step) / self.clock_rate

    def close(self) -> RecordingSummary:
        """Finish the file (Matroska cues and duration) and say what it holds."""
        if not self.closed:
            self.closed = True
            if self._container is not None:
                try:
                    self._container.close()
                except Exception as exc:
                    logger.exception("recording %s: closing %s failed", self.recording_sid,
                                     self.path)
                    self._error = self._error or f"{type(exc).__name__}: {exc}"
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        error = self._error
        if error is None and self.frames_written == 0:
            error = "no media was received"
        return RecordingSummary(
            recording_sid=self.recording_sid,
            codec=self._codec,
            started_at=self._started_at,
            duration=self.duration,
            size=size,
            error=error,
        )

    def end(self) -> None:
        """Close, and report it: the recording ended without a StopRecording."""
        if not self.closed:
            self._report(RecordingEnded(**dataclasses.asdict(self.close())))


# ------------------------------------------------------------ frame sizes


def frame_size(codec: str, data: bytes) -> tuple[int, int]:
    """Width and height of a keyframe, read from its header (Matroska needs them)."""
    if codec == "vp8":
        # RFC 6386 section 9.1: 3-byte frame tag, start code 9d 01 2a, then
        # 14-bit width and height (2 bits of scaling each).
        if len(data) < 10 or data[3:6] != b"\x9d\x01\x2a":
            raise ValueError("not a VP8 keyframe")
        width = int.from_bytes(data[6:8], "little") & 0x3FFF
        height = int.from_bytes(data[8:10], "little") & 0x3FFF
        return width, height
    if codec == "h264":
        for nal in split_annexb(data):
            if nal[0] & 0x1F == 7:
                return h264_sps_size(nal)
        raise ValueError("H.264 keyframe without a sequence parameter set")
    raise ValueError(f"no frame size for {codec}")


class _Bits:
    """An RBSP bit reader with Exp-Golomb codes (ITU-T H.264 section 9.1)."""

    def __init__(self, data: bytes) -> None:
        # Emulation prevention: 00 00 03 -> 00 00 (section 7.4.1).
        self.data = data.replace(b"\x00\x00\x03", b"\x00\x00")
        self.position = 0

    def bit(self) -> int:
        byte = self.data[self.position >> 3]
        value = (byte >> (7 - (self.position & 7))) & 1
        self.position += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def h264_sps_size(nal: bytes) -> tuple[int, int]:
    """Width and height that an H.264 sequence parameter set describes (section 7.3.2.1.1)."""
    bits = _Bits(nal[1:])
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.bit()  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma
        bits.ue()  # bit_depth_chroma
        bits.bit()  # qpprime_y_zero_transform_bypass
        if bits.bit():  # seq_scaling_matrix_present
            for index in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    last = next_ = 8
                    for _ in range(16 if index < 6 else 64):
                        if next_:
                            next_ = (last + bits.se()) % 256
                        last = next_ or last
    bits.ue()  # log2_max_frame_num
    order_type = bits.ue()
    if order_type == 0:
        bits.ue()
    elif order_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_allowed
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field
    bits.bit()  # direct_8x8_inference
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return width, height
